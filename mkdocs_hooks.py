"""MkDocs hook: the CLI reference page, generated from the Typer app at build time, so that it
cannot drift from the commands (`mkdocs.yml` names this file under ``hooks``)."""

from __future__ import annotations

from mkdocs.structure.files import File

PAGE = "reference/cli.md"


def on_files(files, config):
    """Add the generated CLI page to the site's files."""
    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files


def cli_reference() -> str:
    """Markdown of every command: its help and its options, by panel."""
    import typer

    from edgetran.cli.main import app

    lines = [
        "# CLI reference",
        "",
        "Generated from the command line at build time; `edgetran COMMAND --help` says the same.",
        "",
    ]
    for path, command in _commands(typer.main.get_command(app), ["edgetran"]):
        lines += _section(path, command)
    return "\n".join(lines) + "\n"


def _commands(group, path):
    for name in sorted(getattr(group, "commands", {})):
        command = group.commands[name]
        if getattr(command, "commands", None):
            yield from _commands(command, [*path, name])
        else:
            yield [*path, name], command


def _section(path, command) -> list[str]:
    lines = [f"## `{' '.join(path)}`", "", (command.help or "").strip(), ""]
    panels: dict[str, list[str]] = {}
    for param in command.params:
        if param.name == "help" or not getattr(param, "opts", None):
            continue
        names = " / ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        if param.param_type_name == "argument":
            names = f"`{param.name.upper()}`"
        default = param.default if param.show_default is not False else None
        shown = "" if default in (None, False, ()) else f"`{default}`"
        help_text = (getattr(param, "help", "") or "").replace("|", "\\|").replace("\n", " ")
        panel = getattr(param, "rich_help_panel", None) or "Options"
        panels.setdefault(panel, []).append(f"| {names} | {help_text} | {shown} |")
    for panel, rows in panels.items():
        lines += [f"**{panel}**", "", "| option | what | default |", "|---|---|---|", *rows, ""]
    return lines
