"""Money as integer minor units: currency codes, exact rounding and display."""

from domain import errors

# ISO 4217 currencies whose minor unit is the major unit (no decimals).
_ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "isk",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
# ISO 4217 currencies with three decimal places.
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def normalize_currency(currency: str) -> str:
    """Lowercase a currency code; raise `INVALID_CURRENCY` unless it is three ASCII letters."""
    if (
        not isinstance(currency, str)
        or len(currency) != 3
        or not (currency.isascii() and currency.isalpha())
    ):
        raise errors.INVALID_CURRENCY(f"Invalid currency code: {currency!r}")
    return currency.lower()


def minor_unit_exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (ISO 4217)."""
    code = normalize_currency(currency)
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Exact integer division rounding halves away from zero (2.5 -> 3, -2.5 -> -3)."""
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def format_amount(amount: int, currency: str) -> str:
    """Render minor units for humans, e.g. (1050, "usd") -> "10.50 USD"."""
    exponent = minor_unit_exponent(currency)
    code = currency.upper()
    sign = "-" if amount < 0 else ""
    if exponent == 0:
        return f"{sign}{abs(amount)} {code}"
    major, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{major}.{minor:0{exponent}d} {code}"
