"""The plans API's request and response bodies."""

from __future__ import annotations

from pydantic import Field

from handoff.plans.models import TaskStatus
from handoff.schemas import InputModel, OutputModel, UtcDatetime
from handoff.sessions.schemas import PlanProgress

Slug = str


class TaskInput(InputModel):
    """A task of a new plan."""

    name: str = Field(min_length=1, max_length=500)
    status: TaskStatus = TaskStatus.PENDING


class PhaseInput(InputModel):
    """A phase of a new plan."""

    name: str = Field(min_length=1, max_length=500)
    tasks: list[TaskInput] = Field(default_factory=list, max_length=1000)


class PlanCreate(InputModel):
    """Create a plan."""

    slug: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=10_000)
    phases: list[PhaseInput] = Field(default_factory=list, max_length=200)
    current_phase: str | None = None


class PlanUpdate(InputModel):
    """Change a plan's title, description or current phase (absent fields stay)."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=10_000)
    current_phase: str | None = None


class TaskStatusUpdate(InputModel):
    """Set one task's status."""

    phase: str = Field(min_length=1)
    task: str = Field(min_length=1)
    status: TaskStatus


class TaskRead(OutputModel):
    name: str
    status: TaskStatus


class PhaseRead(OutputModel):
    name: str
    tasks: list[TaskRead]


class PlanRead(OutputModel):
    """A plan with its progress."""

    slug: str
    title: str
    description: str | None
    phases: list[PhaseRead]
    current_phase: str | None
    progress: PlanProgress
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PlanList(OutputModel):
    """The workspace's plans, by slug."""

    items: list[PlanRead]
