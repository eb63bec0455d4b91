"""Results, the tables and the environment they were measured in.

Why a recorder: every workload runs twice, once on stock asyncio with its peers (the column the
goals judge) and once more for asynccache alone under uvloop. Workloads record through a
:class:`Recorder` that knows which pass it is in, so the workload code is written once and the
second pass lands in the uvloop column of the same rows.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

#: ns: time (lower is better); rate: per second (higher is better); count, bytes, per: lower is
#: better; x: a ratio printed as is (no comparison).
Kind = Literal["ns", "rate", "count", "bytes", "per", "x"]
_LOWER_IS_BETTER = frozenset({"ns", "count", "bytes", "per"})


@dataclass
class PeerFigure:
    name: str
    value: float | None  # None: not installed / not driven (``note`` says why)
    note: str = ""


@dataclass
class Metric:
    workload: str
    label: str
    kind: Kind
    ours: float | None = None
    uv: float | None = None
    peers: list[PeerFigure] = field(default_factory=list)

    def peer(self, name: str) -> float | None:
        for figure in self.peers:
            if figure.name == name:
                return figure.value
        return None


class Results:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.notes: list[str] = []

    def get(self, mid: str) -> Metric | None:
        return self.metrics.get(mid)

    def ours(self, mid: str) -> float | None:
        metric = self.metrics.get(mid)
        return None if metric is None else metric.ours

    def peer(self, mid: str, name: str) -> float | None:
        metric = self.metrics.get(mid)
        return None if metric is None else metric.peer(name)


@dataclass
class Recorder:
    """Where a workload writes its figures. ``uvloop=True``: asynccache's figures go to the
    uvloop column and peers are not run at all (``with_peers`` is False)."""

    results: Results
    uvloop: bool = False

    @property
    def with_peers(self) -> bool:
        return not self.uvloop

    def ours(self, mid: str, workload: str, label: str, kind: Kind, value: float) -> None:
        metric = self.results.metrics.get(mid)
        if metric is None:
            metric = self.results.metrics[mid] = Metric(workload, label, kind)
        if self.uvloop:
            metric.uv = value
        else:
            metric.ours = value

    def peer(self, mid: str, name: str, value: float | None, note: str = "") -> None:
        if self.uvloop:
            return
        self.results.metrics[mid].peers.append(PeerFigure(name, value, note))

    def note(self, text: str) -> None:
        if text not in self.results.notes:
            self.results.notes.append(text)


# --- formatting ---------------------------------------------------------------------------------


def fmt(kind: Kind, value: float | None) -> str:
    if value is None:
        return "—"
    if kind == "ns":
        if value < 1_000:
            return f"{value:.0f} ns"
        if value < 1_000_000:
            return f"{value / 1_000:.2f} µs"
        if value < 1_000_000_000:
            return f"{value / 1_000_000:.2f} ms"
        return f"{value / 1e9:.2f} s"
    if kind == "rate":
        return f"{value:,.0f}/s"
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "bytes":
        return f"{value / 2**20:,.1f} MiB" if value >= 10 * 2**20 else f"{value:,.0f} B"
    if kind == "x":
        return f"{value:.2f}x"
    return f"{value:.3f}"


def ratio(kind: Kind, ours: float | None, peer: float | None) -> float | None:
    """How many times better asynccache is than the peer (above 1: better)."""
    if ours is None or peer is None or kind == "x":
        return None
    if kind in _LOWER_IS_BETTER:
        return peer / ours if ours > 0 else None
    return ours / peer if peer > 0 else None


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def tables(results: Results, with_uvloop: bool) -> list[str]:
    """One markdown table per workload, one row per (metric, peer)."""
    out: list[str] = []
    by_workload: dict[str, list[Metric]] = {}
    for metric in results.metrics.values():
        by_workload.setdefault(metric.workload, []).append(metric)
    uv_head = " asynccache, uvloop |" if with_uvloop else ""
    uv_rule = "---:|" if with_uvloop else ""

    def number(workload: str) -> int:
        head = workload.split(".", 1)[0]
        return int(head) if head.isdigit() else 99

    for workload, metrics in sorted(by_workload.items(), key=lambda item: number(item[0])):
        out += [
            f"### {workload}",
            "",
            f"| metric | asynccache |{uv_head} peer | peer figure | ratio |",
            f"|---|---:|{uv_rule}---|---:|---:|",
        ]
        for metric in metrics:
            uv = f" {fmt(metric.kind, metric.uv)} |" if with_uvloop else ""
            head = f"| {metric.label} | {fmt(metric.kind, metric.ours)} |{uv}"
            blank = "| |  |" + (" |" if with_uvloop else "")
            if not metric.peers:
                out.append(f"{head} — | | |")
            for i, peer in enumerate(metric.peers):
                lead = head if i == 0 else blank
                figure = fmt(metric.kind, peer.value) if peer.value is not None else peer.note
                r = fmt_ratio(ratio(metric.kind, metric.ours, peer.value))
                out.append(f"{lead} {peer.name} | {figure} | {r} |")
        out.append("")
    return out


# --- goals --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoalLine:
    passed: bool | None  # None: not measured (a peer or the figure is missing)
    goal: str
    measured: str
    versus: str = ""

    def text(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[self.passed]
        return f"{verdict}  {self.goal:<58}  {self.measured:<14}  {self.versus}".rstrip()


# --- environment --------------------------------------------------------------------------------


def pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's name, and its clock where the name omits it (a VM's "Xeon Processor")."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "?"
    mhz = fields.get("cpu MHz")
    if mhz and "Hz" not in model:
        model += f" at {float(mhz) / 1000:.1f} GHz"
    return model


def environment(redis_server: str, loops: Iterable[str]) -> list[str]:
    return [
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs; {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"event loops: {', '.join(loops)}",
        f"- asynccache {pkg('asynccache')}, openai {pkg('openai')}, redis-py {pkg('redis')} "
        f"(hiredis {pkg('hiredis')}), Redis server {redis_server} on loopback",
        f"- peers: aiocache {pkg('aiocache')}, cashews {pkg('cashews')}, "
        f"langchain-core {pkg('langchain-core')}; uvloop {pkg('uvloop')}",
    ]
