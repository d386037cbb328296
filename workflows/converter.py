"""The data converter every Temporal client and worker of Recur uses: pydantic models as
JSON, as `temporalio.contrib.pydantic` does, with one JSON converter shared by all.

The SDK builds a new payload converter for every workflow activation (a data converter
with that workflow's serialization context, and another that knows the current command).
The stock pydantic converter builds a JSON serializer and an empty type-adapter cache in
its constructor, which was 3% of the worker's CPU in a renewal storm, and every activation
began with a cold cache. Nothing in the JSON converter depends on the context, so all the
instances share one.
"""

from __future__ import annotations

from typing import ClassVar

from temporalio.contrib.pydantic import (
    PydanticJSONPlainPayloadConverter,
    PydanticPayloadConverter,
)
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """`PydanticPayloadConverter` with the same encodings, cheap to construct."""

    json: ClassVar[PydanticJSONPlainPayloadConverter] = PydanticJSONPlainPayloadConverter()

    def __init__(self) -> None:
        # The composite's constructor, not PydanticPayloadConverter's: that one would make a
        # fresh JSON converter.
        CompositePayloadConverter.__init__(
            self,
            *(
                self.json if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            ),
        )


data_converter = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
