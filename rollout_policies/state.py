"""A stack's rollout state: which stage and step it is at, the versions, the traffic weights.

It lives in the stack's ``Pulumi.<stack>.yaml`` under the key ``markethub-rollout:rollout``. The
Pulumi program reads nothing else to decide traffic; only the tool (or a person, in a PR) writes it.

    markethub-rollout:rollout:
      stage: limited          # a stage id of the plan
      step: 0                 # index into the stage's traffic steps
      stable:    {colour: blue,  version: 4.12.0}
      candidate: {colour: green, version: 5.0.0}
      weights:   {blue: 98, green: 2}
      stageStartedAt: "2026-11-20T09:00:00Z"
      stepStartedAt:  "2026-11-20T09:00:00Z"
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_KEY = "markethub-rollout:rollout"


class Colour(StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Colour:
        return Colour.GREEN if self is Colour.BLUE else Colour.BLUE


class Release(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    colour: Colour
    version: str = Field(min_length=1)


class RolloutState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    stage: str
    step: int = Field(ge=0)
    stable: Release
    candidate: Release
    weights: dict[Colour, int]
    stage_started_at: datetime = Field(alias="stageStartedAt")
    step_started_at: datetime = Field(alias="stepStartedAt")

    @model_validator(mode="after")
    def _consistent(self) -> RolloutState:
        if self.stable.colour == self.candidate.colour:
            raise ValueError("stable and candidate must be different colours")
        if set(self.weights) != {Colour.BLUE, Colour.GREEN}:
            raise ValueError("weights must name blue and green")
        if any(w < 0 or w > 100 for w in self.weights.values()):
            raise ValueError("weights must be between 0 and 100")
        if sum(self.weights.values()) != 100:
            raise ValueError(f"weights must sum to 100, not {sum(self.weights.values())}")
        for name in ("stage_started_at", "step_started_at"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name} needs a time zone (write it as ...Z)")
        return self

    @property
    def candidate_weight(self) -> int:
        return self.weights[self.candidate.colour]

    def to_config(self) -> dict[str, Any]:
        """The plain mapping written to the stack config (camelCase keys, ISO times)."""
        return {
            "stage": self.stage,
            "step": self.step,
            "stable": {"colour": self.stable.colour.value, "version": self.stable.version},
            "candidate": {"colour": self.candidate.colour.value, "version": self.candidate.version},
            "weights": {c.value: self.weights[c] for c in (Colour.BLUE, Colour.GREEN)},
            "stageStartedAt": _iso(self.stage_started_at),
            "stepStartedAt": _iso(self.step_started_at),
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
