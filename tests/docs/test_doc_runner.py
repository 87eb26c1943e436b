"""The doc-block runner can fail: each kind of block is caught when it is wrong, and markers are honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from docblocks import Block, DocBlockError, commonmark_code_blocks, parse
from docrun import run_block, run_python, run_shell, run_yaml

MD = '''# t

```python
x = 1
```

<!-- illustration: pseudo-code -->
```python
MyStore(...)
```

<!-- xfail: kit bug -->
~~~python
assert x == 2
~~~

```
plain
```

- in a list:

  ```sh
  cbchaos doctor
  ```
'''


def _block(source: str, language: str = "python", line: int = 1) -> Block:
    return Block("t.md", line, language, source, None, "")


def test_parse_finds_every_fence_with_its_marker_and_kind() -> None:
    blocks = parse(MD, "t.md")
    assert [(b.line, b.language, b.marker, b.reason, b.kind) for b in blocks] == [
        (3, "python", None, "", "python"),
        (8, "python", "illustration", "pseudo-code", "illustration"),
        (13, "python", "xfail", "kit bug", "python"),
        (17, "", None, "", "unknown"),
        (23, "sh", None, "", "shell"),
    ]
    assert blocks[4].source.strip() == "cbchaos doctor"


def test_indented_code_blocks_are_reported_and_fences_agree_with_commonmark() -> None:
    fenced, indented = commonmark_code_blocks("Run it:\n\n    make chaos\n\n" + MD)
    assert indented == [3]
    assert fenced == [b.line + 4 for b in parse(MD, "t.md")]


def test_marker_without_reason_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(DocBlockError, match=r"t\.md:2: <!-- illustration --> needs a reason"):
        parse("\n<!-- illustration -->\n```python\nx\n```\n", "t.md")


def test_unmarked_block_in_a_language_we_cannot_run_fails() -> None:
    block = parse(MD, "t.md")[3]
    with pytest.raises(DocBlockError, match=r"t\.md:17: a plain block cannot run.*illustration"):
        run_block(block, [block], request=None, scratch=Path("."))  # type: ignore[arg-type]


def test_illustration_block_is_skipped_with_its_reason() -> None:
    block = parse(MD, "t.md")[1]
    with pytest.raises(pytest.skip.Exception, match="illustration: pseudo-code"):
        run_block(block, [block], request=None, scratch=Path("."))  # type: ignore[arg-type]


def test_python_block_runs_after_the_blocks_above_it_and_can_fail() -> None:
    first, second = _block("x = 1\n"), _block("assert x == 2\n", line=5)
    with pytest.raises(AssertionError):
        run_python(second, [first], fixture=lambda name: None)
    assert run_python(_block("y = x + 1\n", line=5), [first], fixture=lambda name: None)["y"] == 2


def test_failing_earlier_block_is_named() -> None:
    with pytest.raises(DocBlockError, match=r"t\.md:1 \(runs before t\.md:5\) failed"):
        run_python(_block("pass\n", line=5), [_block("1 / 0\n")], fixture=lambda name: None)


def test_python_block_gets_the_kit_fixtures_it_names() -> None:
    asked = []
    ns = run_python(_block("v = cbchaos_thing + 1\n"), [], fixture=lambda name: asked.append(name) or 41)
    assert asked == ["cbchaos_thing"] and ns["v"] == 42


TEST_FILES_MD = """
```python
def test_ok(cbchaos_redis):
    assert cbchaos_redis.ping()
```

```python
def test_wrong():
    assert 1 == 2
```

<!-- xfail: kit bug -->
```python
def test_known_bug():
    assert 1 == 2
```

<!-- illustration: not a test -->
```python
def test_never():
    assert 1 == 2
```
"""


def test_test_file_blocks_run_as_modules_of_the_session(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(Path(__file__).parent)
    pytester.makeconftest(f"""
from docblocks import parse
from docrun import DocTestFiles

def pytest_pycollect_makemodule(module_path, parent):
    if module_path.name == "test_blocks.py":
        return DocTestFiles.from_parent(parent, path=module_path, blocks=parse({TEST_FILES_MD!r}, "t.md"))
""")
    pytester.makepyfile(test_blocks="")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["PASSED test_blocks.py::t.md:2::test_ok", "FAILED test_blocks.py::t.md:7::test_wrong*"])


def test_shell_block_fails_on_a_nonzero_exit_or_a_command_we_do_not_run(tmp_path: Path) -> None:
    with pytest.raises(DocBlockError, match=r"cbchaos check missing\.jsonl.*exited 4"):
        run_shell(_block("cbchaos check missing.jsonl   # no such file\n", "sh"), tmp_path)
    with pytest.raises(DocBlockError, match=r"t\.md:4: cannot run 'make'"):
        run_shell(_block("\n# comment\nmake chaos\n", "sh"), tmp_path)


def test_yaml_block_is_validated_then_run(pytester: pytest.Pytester, scn, request: pytest.FixtureRequest) -> None:
    with pytest.raises(DocBlockError, match=r"loader rejects.*latncy"):
        run_yaml(_block("name: x\ntarget: breaker-store\nfaults:\n  - {kind: latncy, target: redis, at: 0}\n",
                        "yaml"), request)
    (pytester.path / "scenarios" / "sample_targets.py").write_text(  # a counter that loses updates
        (Path(__file__).parents[1] / "scenario" / "sample_targets.py").read_text())
    with pytest.raises(DocBlockError, match=r"the scenario did not pass.*'failed': 1"):
        run_yaml(_block(scn.MUTANT, "yaml"), request)
