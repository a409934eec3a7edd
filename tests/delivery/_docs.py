"""Shell commands exactly as the docs show them, for the delivery tests to compare or run.

Role: README.md's indented code blocks, kind-config.yaml's commented commands and the chart's
rendered NOTES are what users paste; reading the commands out of them (instead of keeping a
copy in a test) means a test fails as soon as a document drifts. Callers:
tests/delivery/test_helm_install.py, test_kind_config.py and test_readme.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

__all__ = ["README", "REPO", "code_blocks", "commands", "commented_blocks", "kind_path_commands",
           "option", "readme_section"]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def readme_section(heading: str) -> str:
    """The README text under the heading line starting with `heading`, up to the next heading
    of the same or a higher level."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    level = len(heading) - len(heading.lstrip("#"))
    end = next((i for i in range(start + 1, len(lines))
                if re.match(rf"^#{{1,{level}}} ", lines[i])), len(lines))
    return "\n".join(lines[start + 1:end])


def code_blocks(text: str, indent: int) -> list[str]:
    """Runs of lines indented by at least `indent` spaces, as printed (indentation kept); a
    blank line or a less indented line ends a run."""
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith(" " * indent) and line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return ["\n".join(b) for b in blocks if b]


def commented_blocks(text: str) -> list[str]:
    """The code blocks inside `#` comments: `#   cmd` lines, with prose being `# text`."""
    uncommented = "\n".join(line[1:] if line.startswith("#") else "" for line in
                            text.splitlines())
    return code_blocks(uncommented, 2)


def commands(block: str) -> list[list[str]]:
    """Each command of a block as the shell would split it: `\\` continuations joined, `#`
    comments and quotes removed. One command per line otherwise (no multi-line quotes)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def kind_path_commands() -> list[list[str]]:
    """The README's kind path: the one code block under its heading, command by command."""
    (block,) = code_blocks(readme_section("### 3. kind path"), 4)
    return commands(block)


def option(argv: list[str], name: str) -> list[str]:
    """Every value argv gives the option `name`, as `name VALUE` or `name=VALUE`."""
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    return values + [arg.split("=", 1)[1] for arg in argv if arg.startswith(name + "=")]
