"""The data converter every Temporal client and worker of Recur uses: pydantic models as
JSON, the encoding of the SDK's `pydantic_data_converter`, with one JSON converter shared by
all the payload converters the SDK builds.

The SDK builds a new payload converter from `payload_converter_class` for every workflow
activation it completes. The stock `PydanticPayloadConverter` makes a JSON serializer and
an empty type-adapter cache each time, so every activation paid for both and began with a
cold cache (3% of the worker's CPU in a renewal storm). Nothing in the JSON converter
depends on a serialization context, so `PayloadConverter` composes the SDK's default
encodings, as its documentation shows for a custom converter, with the one shared instance
in place of the plain JSON one.
"""

from __future__ import annotations

from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

# Default options: the bytes `pydantic_data_converter` writes, so histories replay either way.
SHARED_JSON = PydanticJSONPlainPayloadConverter()


class PayloadConverter(CompositePayloadConverter):
    """The default encodings in their order, JSON through `SHARED_JSON`."""

    def __init__(self) -> None:
        super().__init__(
            *(
                SHARED_JSON if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = DataConverter(payload_converter_class=PayloadConverter)
