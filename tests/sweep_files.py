"""Tiny sweep files for the tests, written from one small base so that each test names only what it changes."""

import json

# two narrow conv stages: a classifier that trains on a few hundred images in about a second
SMALL_CLASSIFIER = {"model.channels": [[4], [8]], "model.kernel_sizes": [3, 3]}
SMALL_AUTOENCODER = {"model.channels": [4, 8]}


def sweep_toml(name: str, task: str, base: dict, grids: tuple[dict, ...] = (), resources: dict | None = None,
               description: str = "") -> str:
    """A sweep file's text: a [base] table, one [[grid]] table per dict (its lists are the axes), [resources]."""
    def table(header: str, values: dict) -> list[str]:
        return ["", header] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]

    lines = [f"name = {json.dumps(name)}", f"task = {json.dumps(task)}"]
    lines += [f"description = {json.dumps(description)}"] if description else []
    lines += table("[base]", base)
    for grid in grids:
        lines += table("[[grid]]", grid)
    lines += table("[resources]", resources) if resources else []
    return "\n".join(lines) + "\n"

