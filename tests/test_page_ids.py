"""Page ids are numbered per kernel, from #1 at each boot (the shared zero page is #0): one
scenario names its pages alike in every trace and view, whatever else ran in the process."""

from __future__ import annotations

import io
import re
import sys

import pytest

import ksmbook as kb
from ksmbook.__main__ import main
from ksmbook.render import ksm_pages as kp

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS
#: Page-cache pages, a private file copy, fork and its COW copy, merges and a broken KSM page.
SCENARIO = """\
file data.bin 4p
map F 2p rw private file=data.bin
write F 5
read F+1p
map A 6p rw private anon
write A 1 1 2 0 2 3
madvise A 6p MERGEABLE
fork child
child: write A+5p 7
sysfs run=1
ksmd scan 2
write A 9
ksmd scan 1
"""


def boot(profile: str) -> kb.Kernel:
    """A kernel that has run the pages of `SCENARIO` and, on kernels with THP, a huge page
    (512 subpages) and a split of it by ksmd."""
    k = kb.Kernel(profile=profile)
    if k.profile.use_zero_pages:
        k.sysfs["use_zero_pages"] = 1
    f = k.create_file("data.bin", 4 * P, contents=[5, 6])
    p = k.spawn("p")
    a = p.mmap(2 * P, RW, kb.MAP_PRIVATE, file=f)
    p.write_pages(a, [5])
    p.read_page(a + P)
    if k.profile.thp:
        big = p.mmap(2 * kb.HPAGE_SIZE, RW, ANON)
        huge = -(-big // kb.HPAGE_SIZE) * kb.HPAGE_SIZE
        p.madvise(huge, kb.HPAGE_SIZE, kb.MADV.MADV_HUGEPAGE)
        p.write_pages(huge, [1, 1, 2])
        p.madvise(huge, kb.HPAGE_SIZE, kb.MADV_MERGEABLE)
    b = p.mmap(6 * P, RW, ANON)
    p.write_pages(b, [1, 1, 2, 0, 2, 3])
    p.madvise(b, 6 * P, kb.MADV_MERGEABLE)
    child = p.fork("child")
    child.write_pages(b + 5 * P, [7])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    p.write_pages(b, [9])
    k.ksmd.full_scans(1)
    return k


def views(k: kb.Kernel) -> list[str]:
    """Every trace the kernel logged, ksmd's traces printed raw, and its page view."""
    return ([str(t) for t in k.log] + [str(t) for t in k.ksmd.log]
            + [kp.pages_text(kp.page_state(k))])


def run_trace(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              profile: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(SCENARIO))
    assert main(["run", "-", "--trace", "--profile", profile]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_two_kernels_number_their_pages_alike_whatever_ran_between(
        profile: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, first_run = views(boot(profile)), run_trace(capsys, monkeypatch, profile)
    boot("modern" if profile == "2.6.32" else "2.6.32")  # a third kernel allocates pages
    assert views(boot(profile)) == first
    assert run_trace(capsys, monkeypatch, profile) == first_run
    # The numbers are this boot's: the file's page cache, allocated first, is #1 and #2; the
    # shared zero page is #0.
    k = boot(profile)
    assert [page.id for page in k.files["/tmp/data.bin"].pages.values()] == [1, 2]
    zero = [r.page for r in kp.page_state(k).rows if r.state == "KSM zero page"]
    assert set(zero) == ({0} if profile == "modern" else set())


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_a_raw_ksmd_trace_names_the_pages_of_the_page_view(profile: str) -> None:
    """2.6.32 merges into a new page (a copy), later kernels into one of the pages: either way
    the trace printed as it is names the KSM pages the page table view shows."""
    k = kb.Kernel(profile=profile)
    p = k.spawn("p")
    a = p.mmap(5 * P, RW, ANON)
    p.write_pages(a, [1, 1, 2, 2, 3])
    p.madvise(a, 5 * P, kb.MADV_MERGEABLE)
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    named = {int(n) for t in k.ksmd.log for n in re.findall(r"KSM page #(\d+)", str(t))}
    state = kp.page_state(k)
    shown = {r.page for r in state.rows if r.state == "KSM page"}
    assert len(shown) == 2 and named == shown == {n.page for n in state.stable}
    assert shown == {page.id for page in p.mm.ptes.values() if page.ksm is not None}
    text = kp.pages_text(state)
    assert all(f"#{n}" in text for n in shown)
    copies = profile == "2.6.32"  # 2.6.32's KSM pages are pages #6 and #7, after the 5 written
    assert (shown == {6, 7}) == copies


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_an_exercise_solution_and_its_replay_name_the_same_ksm_pages(
        profile: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages a ksmd exercise's solution shows are those its replay's ``run --trace``
    merges into: both boot a kernel and run the same statements."""
    from ksmbook.exercises.registry import generate

    for seed in range(20):
        text = generate("ksmd-mix", seed, profile).solution_text()
        stable = {int(n) for n in re.findall(r"^  \S+ +#(\d+) +\d+ rmap_items", text, re.M)}
        if stable:
            break
    assert stable, "no ksmd-mix exercise merges"
    m = re.search(r"^    python -m ksmbook run - <<'EOF'\n(.*?)^    EOF$", text, re.M | re.S)
    assert m is not None, text
    script = "".join(line.removeprefix("    ") + "\n" for line in m[1].splitlines())
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["run", "-", "--trace"]) == 0
    traced = {int(n) for n in re.findall(r"KSM page #(\d+)", capsys.readouterr().out)}
    assert stable <= traced
