"""Base class for params sections: strict (unknown keys rejected), immutable."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params section. Unknown keys are an error; values are validated and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
