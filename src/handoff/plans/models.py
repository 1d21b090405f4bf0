"""The plan document: a workspace's named sequence of phases, each a list of tasks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import pymongo
from beanie import Document
from pydantic import BaseModel, Field
from pymongo import IndexModel

from handoff import clock


class TaskStatus(StrEnum):
    """Where a task of a plan stands."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class PlanTask(BaseModel):
    """One task of a phase."""

    name: str
    status: TaskStatus = TaskStatus.PENDING


class PlanPhase(BaseModel):
    """One phase of a plan."""

    name: str
    tasks: list[PlanTask] = Field(default_factory=list)


class Plan(Document):
    """A plan, unique by slug within its workspace."""

    workspace_id: str
    slug: str
    title: str
    description: str | None = None
    phases: list[PlanPhase] = Field(default_factory=list)
    current_phase: str | None = None
    created_at: datetime = Field(default_factory=clock.now)
    updated_at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "plans"
        use_state_management = False
        indexes = [
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("slug", pymongo.ASCENDING)],
                name="workspace_slug_unique",
                unique=True,
            ),
        ]
