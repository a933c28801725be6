"""``edgetran env``, ``edgetran profile`` and ``edgetran measurements``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgetran.cli import cluster_cmds
from edgetran.cli._common import (
    DbOption,
    ForceFile,
    JsonOption,
    database_name,
    fail,
    on_interrupt,
    option_groups,
    print_json,
    resolve_space,
)

if TYPE_CHECKING:
    from edgetran.cluster import ClusterOptions

#: The fields of ``edgetran profile --json``, in order.
PROFILE_FIELDS = (
    "hash",
    "device",
    "runtime",
    "batch_size",
    "seq_len",
    "latency_s",
    "latency_s_per_seq",
    "latency_ci95_s",
    "energy_j",
    "energy_j_per_seq",
    "dynamic_energy_j",
    "idle_power_w",
    "peak_power_w",
    "power_samples",
    "power_period_s",
    "meter",
    "meter_kind",
    "threads",
    "repeats",
    "other_cpu_cores",
    "contended",
    "cached",
)


def env(as_json: JsonOption = False) -> None:
    """Devices and runtimes found here, the meter `auto` gives each device kind and why, and
    every plug-in: usable here, or why not."""
    from edgetran.profile.environment import discover

    found = discover()
    if as_json:
        print_json(found)
        return
    for device in found["devices"]:
        print(f"device  {device['name']}: {device.get('model', '')}")
    for meter in found["meters"]:
        print(f"meter   {meter['device']}: {meter['meter']} ({meter['kind']}): {meter['why']}")
    for runtime in found["runtimes"]:
        detail = runtime.get("providers") or runtime.get("devices") or runtime.get("error")
        print(f"runtime {runtime['name']} {runtime.get('version', '')}: {detail}")
    width = max((len(r["name"]) for rows in found["plugins"].values() for r in rows), default=0)
    for rows in found["plugins"].values():
        for row in rows:
            state = row["summary"] if row["usable"] else f"NOT USABLE: {row['why_not']}"
            origin = "" if row["origin"] == "built-in" else f" [{row['origin']}]"
            print(f"{row['family']:<10} {row['name']:<{max(width, 16)}} {state}{origin}")


def active_options(
    budget: Annotated[
        int | None, typer.Option(min=1, help="--active: measurements in all (stored count).")
    ] = None,
    target_mape: Annotated[
        float | None,
        typer.Option(min=0, help="--active: stop once held-out latency MAPE ≤ this fraction."),
    ] = None,
    initial: Annotated[int, typer.Option(min=1, help="--active: LHS models to start with.")] = 10,
    pool: Annotated[int, typer.Option(min=1, help="--active: random candidates per step.")] = 64,
    acquisition: Annotated[
        str, typer.Option(help="--active: uncertainty, diverse or random.")
    ] = "uncertainty",
) -> dict[str, Any]:
    """The options of ``--active`` (its budget, stop rule, pool and acquisition), declared once
    as a group: :func:`~edgetran.surrogate.active.profile_actively`'s keyword arguments."""
    return {
        "budget": budget,
        "target_mape": target_mape,
        "initial": initial,
        "pool_size": pool,
        "acquisition": acquisition,
    }


@option_groups(active_learning=active_options, lab=cluster_cmds.lab_options)
def profile(
    device: Annotated[
        str,
        typer.Option(
            help="cpu, cuda:N, or CPU/GPU/NPU/AUTO for openvino; or HARDWARE/RUNTIME "
            "(cpu/onnxruntime), as codesign and worker take it."
        ),
    ] = "cpu",
    runtime: Annotated[
        str | None,
        typer.Option(
            help="torch, onnxruntime, openvino, litert, or one of them + -int8 (default: "
            "--device's, else torch)."
        ),
    ] = None,
    arch: Annotated[
        list[str] | None, typer.Option("--arch", help="Architecture (file or name); repeatable.")
    ] = None,
    n_sample: Annotated[
        int | None, typer.Option("--sample", min=1, help="Profile N LHS-sampled architectures.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling, weights and inputs.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size.")] = 1,
    seq_len: Annotated[int, typer.Option(min=1, help="Sequence length.")] = 128,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (pinned).")] = None,
    meter: Annotated[
        str,
        typer.Option(
            help="auto, zeus, estimate, gpu:INDEX, rapl, soc, command:CMD, csv:PATH or a plug-in."
        ),
    ] = "auto",
    core_watts: Annotated[float, typer.Option(min=0, help="Estimate: W per busy core.")] = 5.0,
    max_time: Annotated[float, typer.Option(min=0, help="Max seconds of timed runs.")] = 30.0,
    idle: Annotated[float, typer.Option(min=0, help="Seconds of idle power measurement.")] = 1.0,
    force: Annotated[bool, typer.Option(help="Re-profile what the store already has.")] = False,
    active: Annotated[
        bool,
        typer.Option("--active", help="Active learning: profile where a surrogate is unsure."),
    ] = False,
    probe_set: Annotated[
        bool,
        typer.Option("--probe", help="Profile the fixed probe set that fingerprints a device."),
    ] = False,
    require_quiet: Annotated[
        bool,
        typer.Option(
            "--require-quiet", help="Wait for other processes to leave the CPUs, or refuse."
        ),
    ] = False,
    quiet_wait: Annotated[
        float, typer.Option(min=0, help="--require-quiet: longest wait in seconds.")
    ] = 60.0,
    *,
    active_learning: dict[str, Any],
    space: Annotated[
        Path | None, typer.Option(help="Design space file for --sample/--active (YAML/JSON).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    lab: ClusterOptions | None,
    on: Annotated[
        str | None,
        typer.Option(
            "--on",
            help="--scheduler: the lab device to measure on (a worker's --device; default: "
            "--device); its measurements are stored under this name.",
        ),
    ] = None,
) -> None:
    """Measure latency, energy and peak power; one JSON object per architecture (--json)."""

    from edgetran.devices import split_device
    from edgetran.profile import ProfileSettings, create_meter
    from edgetran.space import load_architecture, sample

    device, runtime = split_device(device, runtime)
    runtime = runtime or "torch"
    if on is not None and lab is None:
        fail("--on names a lab device: it needs --scheduler")
    node = on or device
    lab = cluster_cmds.offering(lab, [f"{device}/{runtime}"])  # local:N: this machine's

    design_space = resolve_space(space)
    if probe_set and (active or arch or n_sample is not None):
        fail("--probe profiles the fixed probe set; drop --arch/--sample/--active")
    if active:
        if arch or n_sample is not None:
            fail("--active chooses the architectures itself; drop --arch/--sample")
        if active_learning["budget"] is None:
            fail("--active needs --budget N")
    elif not probe_set and bool(arch) == (n_sample is not None):
        fail("give either --arch (one or more), --sample N, or --active --budget N")
    if probe_set:
        from edgetran.space.probes import PROBES

        archs = list(PROBES)
    else:
        archs = (
            [load_architecture(a) for a in arch]
            if arch
            else sample(n_sample or 1, method="lhs", seed=seed, space=design_space)
        )
    settings = ProfileSettings(
        device=device,
        runtime=runtime,
        batch_size=batch_size,
        seq_len=seq_len,
        threads=threads,
        meter=meter,
        core_watts=core_watts,
        max_time_s=max_time,
        idle_s=idle,
        seed=seed,
        require_quiet=require_quiet,
        quiet_wait_s=quiet_wait,
    )
    # on a cluster, the device's worker builds its own meter and has its own runtimes
    if not lab:
        from edgetran.export.runners import require_runtime

        require_runtime(runtime)
    probe = None if lab else create_meter(meter, device, per_core_w=core_watts)
    kept = (
        f"the measurements made so far are stored in {database_name(db)}; run the same "
        "command again to continue (they are not measured again)"
    )
    with on_interrupt(kept), cluster_cmds.cluster_session(lab) as cluster:
        if cluster is not None:
            from edgetran.profile.remote import remote_profiler, worker_for

            cluster.check_devices([worker_for(cluster, node, runtime)])
        remote = {} if cluster is None else {
            "profiler": remote_profiler(cluster, node), "device": node,
        }  # fmt: skip
        if active:
            _profile_active(settings, probe, design_space, active_learning, db, as_json, remote)
            return
        cached_count = _profile_listed(archs, settings, probe, db, force, as_json, remote)
    if cached_count:
        typer.echo(f"{cached_count} already in the store (use --force to redo)", err=True)


def _profile_listed(archs, settings, probe, db, force, as_json, remote) -> int:
    """Profile ``archs`` into the store (here, or on a worker with ``remote``); how many were
    stored already."""
    from rich.console import Console
    from rich.progress import Progress

    from edgetran.profile import profile_into_store
    from edgetran.store import Store

    with Store(db) as store:
        console = Console(stderr=True)
        if probe is not None and probe.estimated:
            console.print(
                f"[yellow]no power sensor here: energy and power are estimates "
                f"({probe.name})[/yellow]"
            )
        with Progress(console=console, disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("profiling", total=len(archs))
            cached_count = 0
            for measurement, cached in profile_into_store(
                archs, settings, store, probe, force=force, **remote
            ):
                _report(measurement, as_json, cached)
                cached_count += cached
                progress.advance(task)
    return cached_count


def _profile_active(settings, probe, design_space, active_learning, db, as_json, remote) -> None:
    """Active-learning profiling, resumable (stored measurements count towards the budget)."""
    from rich.console import Console
    from rich.progress import Progress

    from edgetran.profile import stored_measurements
    from edgetran.store import Store
    from edgetran.surrogate.active import profile_actively

    with Store(db) as store:
        existing = len(stored_measurements(store, settings, remote.get("device")))
        if existing:
            typer.echo(f"resuming: {existing} measurements already in the store", err=True)
        console = Console(stderr=True)
        with Progress(console=console, disable=not sys.stderr.isatty()) as progress:
            total = active_learning["budget"]
            task = progress.add_task("active profiling", total=total, completed=existing)

            def measured(measurement) -> None:
                _report(measurement, as_json)
                progress.advance(task)

            result = profile_actively(
                settings, probe, design_space, store, on_measured=measured, **active_learning,
                **remote,
            )  # fmt: skip
    last = result.history[-1]["holdout_mape"] if result.history else None
    typer.echo(
        f"active profiling stopped ({result.stopped_because}) after "
        f"{len(result.measurements)} measurements"
        + (f"; held-out latency MAPE {last:.3f}" if last is not None else ""),
        err=True,
    )


def _report(measurement, as_json: bool, cached: bool = False) -> None:
    """One line per requested architecture; ``cached``: it came from the store, not a run."""
    record = {**measurement.to_dict(), "cached": cached}
    if as_json:
        sys.stdout.write(json.dumps({k: record[k] for k in PROFILE_FIELDS}) + "\n")
        sys.stdout.flush()
        return
    energy = record["energy_j"]
    typer.echo(
        f"{record['hash'][:12]}  {record['latency_s'] * 1e3:9.3f} ms  "
        f"{energy:.4g} J ({record['meter_kind']})  peak {record['peak_power_w']:.3g} W"
        + ("  (stored)" if cached else "")
        + (
            f"  CONTENDED: others used {record['other_cpu_cores']:.2f} cores"
            if record["contended"]
            else ""
        )
    )


measurements_app = typer.Typer(
    help="Import, export and list stored measurements.", no_args_is_help=True
)
#: ``--format`` of a measurement file (``FILE_FORMATS``).
MeasurementFormat = Annotated[str, typer.Option("--format", help="protran, csv or parquet.")]


@measurements_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Measurement file.")],
    format: MeasurementFormat,
    device: Annotated[
        str | None, typer.Option(help="Device name (default: protran file name, or the file's).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Import measurements into the store."""
    from edgetran.profile import FILE_FORMATS, read_measurements
    from edgetran.store import Store

    if format not in FILE_FORMATS:
        fail(f"--format {format!r} is invalid; allowed: {', '.join(FILE_FORMATS)}")
    if not file.is_file():
        fail(f"{file}: no such file")
    items = read_measurements(file, format, device)
    with Store(db) as store:
        added = sum(row_id is not None for row_id in store.add_many(items))
    stored = f" ({len(items) - added} already in the store)" if added < len(items) else ""
    typer.echo(f"imported {added} measurements from {file}{stored}", err=True)


@measurements_app.command("export")
def export_(
    device: Annotated[str, typer.Option(help="Device whose measurements to export.")],
    format: MeasurementFormat,
    out: Annotated[Path, typer.Option("--out", help="Output file.")],
    db: DbOption = None,
    force: ForceFile = False,
) -> None:
    """Export one device's measurements."""
    from edgetran.errors import prepare_output_file
    from edgetran.profile import FILE_FORMATS, write_measurements
    from edgetran.store import Store

    if format not in FILE_FORMATS:
        fail(f"--format {format!r} is invalid; allowed: {', '.join(FILE_FORMATS)}")
    prepare_output_file(out, force=force)
    with Store(db, create=False) as store:
        items = store.measurements(device)
    if not items:
        fail(f"no measurements for device {device!r} in the store")
    write_measurements(items, out, format)
    typer.echo(f"exported {len(items)} measurements to {out}", err=True)


@measurements_app.command("list")
def list_(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Stored measurements per device, runtime and input shape."""
    from rich.console import Console
    from rich.table import Table

    from edgetran.store import Store

    with Store(db, create=False) as store:
        groups = store.summary()
    if as_json:
        print_json(groups)
        return
    table = Table(title="measurements")
    for column in ("device", "runtime", "batch", "seq", "count", "meters"):
        table.add_column(column)
    for g in groups:
        table.add_row(
            g["device"],
            g["runtime"],
            str(g["batch_size"]),
            str(g["seq_len"]),
            str(g["count"]),
            ", ".join(g["meters"]),
        )
    Console().print(table)
