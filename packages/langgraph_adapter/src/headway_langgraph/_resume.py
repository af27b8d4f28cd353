"""What a person sends back: the resume value of a headway interrupt, validated before it is saved.

The schema is passed to `interrupt(..., response_schema=...)`, so LangGraph rejects a bad value with a
pydantic ValidationError *before* saving it: the same interrupt can be answered again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from headway import HumanAction


def _complete(
    action: HumanAction | None, by: str | None, args: Any, text: str | None, where: str = ""
) -> None:
    if action is None:
        raise ValueError(f"{where}`action` is required: one of approve, reject, edit, answer")
    if by is None or not by.strip():
        raise ValueError(f"{where}`by` must name the person who decided (it is recorded with the decision)")
    if action == "edit" and args is None:
        raise ValueError(f"{where}an edit needs `args`: the corrected arguments of the call")
    if action == "answer" and not (text and text.strip()):
        raise ValueError(f"{where}an answer needs `text`: the user's answer to the question")


class Resolution(BaseModel):
    """One person's decision on one paused call.

    `approve` (the call runs), `reject` (it does not; `message` goes to the model), `edit` (it runs with
    `args`, after the policy checks them again), `answer` (`text` answers a clarifying question; the
    call is decided again with it).
    """

    model_config = ConfigDict(extra="forbid")

    action: HumanAction
    by: str = Field(min_length=1)
    message: str | None = None
    args: dict[str, Any] | None = None
    text: str | None = None
    # The escalation record this decision was made on (set by `resume_from_store`): a decision on a
    # record the call has since left behind is refused as stale.
    escalation_id: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Resolution:
        _complete(self.action, self.by, self.args, self.text)
        return self


class Resume(BaseModel):
    """The resume value for a headway interrupt: one resolution for every paused call, or one per call.

    `Command(resume={"action": "approve", "by": "maria"})` answers every call the interrupt lists
    (usually one); `Command(resume={"decisions": {"call_1": {...}, "call_2": {...}}})` answers each by id.
    """

    model_config = ConfigDict(extra="forbid")

    # The call ids the interrupt is waiting on, and a check against the escalation store (raises
    # ValueError to refuse); both set on the per-interrupt subclass.
    expected: ClassVar[tuple[str, ...]] = ()
    verify: ClassVar[Callable[[Mapping[str, Resolution]], None] | None] = None

    action: HumanAction | None = None
    by: str | None = None
    message: str | None = None
    args: dict[str, Any] | None = None
    text: str | None = None
    decisions: dict[str, Resolution] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Resume:
        if self.decisions is not None:
            if self.action is not None:
                raise ValueError(
                    "give either one `action` for every call or `decisions` by call id, not both"
                )
            missing = [c for c in self.expected if c not in self.decisions]
            unknown = [c for c in self.decisions if self.expected and c not in self.expected]
            if missing or unknown:
                raise ValueError(
                    f"`decisions` must have one entry per paused call {list(self.expected)}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; not paused here: {unknown}" if unknown else "")
                )
        else:
            _complete(self.action, self.by, self.args, self.text)
            if self.action == "edit" and len(self.expected) > 1:
                raise ValueError(
                    f"an edit applies to one call; send `decisions` by call id for {list(self.expected)}"
                )
        verify = type(self).verify
        if verify is not None:
            verify(self.resolutions())  # refused here, LangGraph saves nothing: answer again
        return self

    def resolutions(self) -> dict[str, Resolution]:
        """The resolution for each expected call id."""
        if self.decisions is not None:
            return dict(self.decisions)
        assert self.action is not None
        assert self.by is not None
        one = Resolution(action=self.action, by=self.by, message=self.message, args=self.args, text=self.text)
        return dict.fromkeys(self.expected, one)

    @classmethod
    def expecting(
        cls,
        call_ids: tuple[str, ...],
        verify: Callable[[Mapping[str, Resolution]], None] | None = None,
    ) -> type[Resume]:
        """A subclass that checks the value answers exactly these calls (its JSON schema is the same),
        and passes `verify` (e.g. the escalation store's word on each resolution)."""
        attrs = {"expected": call_ids, "verify": staticmethod(verify) if verify else None}
        return type("HeadwayResume", (cls,), {**attrs, "__module__": __name__})
