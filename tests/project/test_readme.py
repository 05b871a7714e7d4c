"""The README's test command is exactly what CI runs."""
from helpers import REPO


def _code_lines(text: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    test_commands = [line for line in _code_lines(readme) if "pytest" in line]
    assert len(test_commands) == 1, test_commands
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_commands[0] in ci_lines


def test_readme_has_two_setup_commands_and_a_picture():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up and run")[1].split("## Use")[0]
    assert len([line for line in _code_lines(setup) if line.startswith("python3 -m venv")]) == 2
    for line in readme.splitlines():
        if line.startswith("![") and "](" in line:
            assert (REPO / line.split("](")[1].rstrip(")")).is_file()
