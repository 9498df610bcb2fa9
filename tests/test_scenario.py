"""The scenario language: parsing, canonical printing, errors with line and column, and the
runner (results, errnos, maps after each step)."""

from __future__ import annotations

import pytest
from helpers import E, P

import ksmbook as kb
from ksmbook import scenario as sc

DOC_EXAMPLE = (sc.__doc__ or "").split("\n\n")[1].replace("    ", "", 1).replace("\n    ", "\n")


def op(text: str) -> sc.Statement:
    (only,) = sc.parse(text).ops
    return only


# -- parsing -------------------------------------------------------------------------------------

def test_the_module_docstring_example_parses_and_runs() -> None:
    s = sc.parse(DOC_EXAMPLE)
    assert [type(o) for o in s.ops] == [
        sc.Boot, sc.CreateFile, sc.Map, sc.Write, sc.Madvise, sc.Map, sc.Fork, sc.Madvise,
        sc.Exit, sc.Spawn, sc.Map, sc.Prctl, sc.SysfsWrite, sc.KsmdScans, sc.Read]
    assert [sc.process_of(o) for o in s.ops][7:9] == ["child", "child"]
    results = sc.run(s)
    assert [r.errno for r in results] == [None] * 15
    assert "child" not in results[8].maps          # exited
    assert [e.vmflags[-1] for e in results[4].maps["p1"]] == ["ac", "mg", "ac"]
    assert results[-1].result == 7                  # read A+1p: the second page written
    assert results[-2].counters is not None and results[-2].counters["full_scans"] == 2


def test_the_docstring_documents_every_statement() -> None:
    doc = sc.__doc__ or ""
    words = {str(o).split()[0] if sc.process_of(o) in (None, "p1") or isinstance(o, sc.Spawn)
             else str(o).split()[1] for o in sc.parse(DOC_EXAMPLE).ops}
    for word in (*words, "munmap", "mprotect", "sysctl", "device", "inject", "ksmd batch",
                 "ksmd run"):
        assert f"``{word}" in doc or f" {word} " in doc, word


@pytest.mark.parametrize(("text", "value"), [
    ("4096", 4096), ("0x1000", 4096), ("4p", 4 * P), ("16k", 16384), ("16K", 16384),
    ("2M", 2 << 20), ("1G", 1 << 30), ("0", 0), ("-1", 2**64 - 1), ("-4096", 2**64 - 4096),
])
def test_lengths(text: str, value: int) -> None:
    assert op(f"munmap 0x10000 {text}") == sc.Munmap("p1", sc.Addr(None, 0x10000), value)


def test_addresses_are_labels_with_offsets_or_numbers() -> None:
    for text, addr in (("A", sc.Addr("A", 0)), ("A+2p", sc.Addr("A", 2 * P)),
                       ("A-0x10", sc.Addr("A", -16)), ("0x7fff0000", sc.Addr(None, 0x7FFF0000))):
        assert op(f"read {text}") == sc.Read("p1", addr)
    assert str(sc.Addr("A", -3 * P)) == "A-3p"


def test_advice_by_name_prefix_case_or_number() -> None:
    for text in ("MERGEABLE", "mergeable", "MADV_MERGEABLE", "madv_mergeable", "12"):
        assert op(f"madvise A 1p {text}") == sc.Madvise("p1", sc.Addr("A", 0), P,
                                                         kb.MADV_MERGEABLE)
    assert op("madvise A 1p 77") == sc.Madvise("p1", sc.Addr("A", 0), P, 77)  # EINVAL: run it


def test_comments_blank_lines_and_line_numbers() -> None:
    s = sc.parse("# a comment\n\nmap A 1p rw private anon   # trailing\n   \nexit\n")
    assert [(type(o), o.line) for o in s.ops] == [(sc.Map, 3), (sc.Exit, 5)]


def test_protections() -> None:
    assert [op(f"map A 1p {t} private anon") for t in ("none", "r", "rw", "wr", "rwx", "x")] \
        == [sc.Map("p1", "A", P, prot) for prot in (0, 1, 3, 3, 7, 4)]


def test_map_options() -> None:
    o = op("map A 2p rw shared file=f at 0x20000 fixed noreserve locked offset=4p")
    assert o == sc.Map("p1", "A", 2 * P, 3, shared=True, backing="file", source="f",
                       at=sc.Addr(None, 0x20000), fixed=True, noreserve=True, locked=True,
                       offset=4 * P)


def test_canonical_text() -> None:
    text = ("kernel 2.6.32 ksm=n\nsysctl max_map_count=100\nfile f 4p tmpfs ro\n"
            "device d0 io\ninject __ksm_enter 2\nmap A 4p rw private anon at 0x10000 fixed\n"
            "madvise A+1p 4097 DONTFORK\nmprotect A 1p none\nwrite A 1 2 3\nfork c\n"
            "c: munmap A 4p\nc: exit\nspawn q\nq: map B 1p r shared anon\nq: read B\n"
            "q: prctl PR_SET_MEMORY_MERGE 1\nprctl PR_GET_MEMORY_MERGE\nsysfs run=1\n"
            "sysfs advisor_mode=scan-time\nksmd batch\nksmd batch 3\nksmd scan 2\n"
            "ksmd run 200\nmunmap A -4p\n")
    assert sc.format_scenario(sc.parse(text)) == text


def test_format_is_canonical_whatever_the_spelling() -> None:
    s = sc.parse("madvise A 4096 madv_mergeable\nmap B 0x2000 wr private anon\n"
                 "sysctl nr_hugepages=0x10\n")
    assert sc.format_scenario(s) == ("madvise A 1p MERGEABLE\nmap B 2p rw private anon\n"
                                     "sysctl nr_hugepages=16\n")


def test_options_in_any_order_parse_to_the_same_scenario() -> None:
    a = sc.parse("map A 4p rw private file=f offset=2p fixed at 0x10000 locked\n")
    b = sc.parse("map A 4p rw private file=f at 0x10000 fixed locked offset=2p\n")
    assert a == b
    assert sc.parse(sc.format_scenario(a)) == a


# -- errors with line and column -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "column", "words"), [
    ("frobnicate", 1, 1, "unknown statement"),
    ("map A 8p rw private", 1, 20, "expected anon"),
    ("map A 8x rw private anon", 1, 7, "is not a number"),
    ("map A 8p rwq private anon", 1, 10, "protection 'rwq'"),
    ("map A 8p rw public anon", 1, 13, "unknown mapping type"),
    ("map A 8p rw private anon fixed", 1, 31, "need 'at ADDR'"),
    ("map A 8p rw private anon bogus", 1, 26, "unknown map option"),
    ("\n\nmadvise A 4p MERGABLE", 3, 14, "did you mean MERGEABLE"),
    ("madvise A 4p", 1, 13, "expected an advice"),
    ("kernel linux", 1, 8, "unknown profile"),
    ("kernel modern ksm=maybe", 1, 15, "unknown kernel option"),
    ("p1 madvise A 4p MERGEABLE", 1, 1, "unknown statement"),
    ("p-1: exit", 1, 1, "not a process name"),
    ("c: kernel modern", 1, 4, "unknown operation"),
    ("write A", 1, 8, "at least one page content"),
    ("sysctl max_map_count=-1", 1, 8, "must not be negative"),
    ("sysctl swappiness=1", 1, 8, "unknown sysctl"),
    ("file f 4p btrfs", 1, 11, "unknown file option"),
    ("munmap 0x1000 99999999999999999999999", 1, 15, "does not fit in 64 bits"),
    ("inject nothing", 1, 8, "unknown fault point"),
    ("device d0 teleport", 1, 11, "unknown driver style"),
    ("exit now", 1, 6, "unexpected 'now'"),
    ("munmap A 1.5p", 1, 10, "'1.5p' is not a whole number"),
    ("spawn", 1, 6, "expected the new process's name"),
    ("ksmd", 1, 5, "expected batch, scan or run"),
    ("ksmd scan", 1, 10, "expected a number of full scans"),
    ("ksmd skan 1", 1, 6, "did you mean scan"),
    ("ksmd batch -1", 1, 12, "must not be negative"),
    ("sysfs rum=1", 1, 7, "did you mean run"),
    ("sysfs run", 1, 7, "expected name=value"),
    ("prctl PR_SET_MEMORY_MERG 1", 1, 7, "did you mean PR_SET_MEMORY_MERGE"),
    ("prctl 4 1", 1, 7, "prctl option 4 is not modelled"),
    ("p2: read", 1, 9, "expected an address"),
    ("write A 1 -2", 1, 11, "between 0 and 2**64-1"),
])
def test_parse_errors_say_where(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(sc.ScenarioError) as exc:
        sc.parse(text)
    e = exc.value
    assert (e.line, e.column) == (line, column)
    assert words in e.message
    assert str(e).startswith(f"line {line}, column {column}: ")


@pytest.mark.parametrize(("text", "line", "words"), [
    ("map A 4p rw private anon\nmadvise B 4p MERGEABLE", 2, "no mapping labelled 'B'"),
    ("c: exit", 1, "no process named 'c'"),
    ("map A 1p rw private anon\nexit\nmadvise A 1p NORMAL", 3, "has exited"),
    ("map A 1p rw private anon\nfork c\nc: fork c", 3, "exists already"),
    ("map A 1p rw private file=nope", 1, "no file named 'nope'"),
    ("kernel modern\ndevice d0 vm_insert_page", 2, "does not exist in the modern kernel"),
])
def test_run_errors_say_which_line(text: str, line: int, words: str) -> None:
    with pytest.raises(sc.ScenarioError) as exc:
        sc.run(text)
    assert exc.value.line == line and words in exc.value.message


@pytest.mark.parametrize(("profile", "ksm", "words"), [
    ("seed", True, "has no ksmd"), ("modern", False, "CONFIG_KSM is not set")])
@pytest.mark.parametrize("statement", ["ksmd batch", "ksmd scan 1", "ksmd run 20",
                                       "sysfs run=1"])
def test_ksmd_statements_need_a_kernel_with_ksmd(profile: str, ksm: bool, words: str,
                                                 statement: str) -> None:
    with pytest.raises(sc.ScenarioError) as exc:
        sc.run(f"kernel {profile} ksm={'y' if ksm else 'n'}\n{statement}\n")
    assert exc.value.line == 2 and words in exc.value.message


def test_a_full_scan_ksmd_cannot_finish_is_a_scenario_error() -> None:
    with pytest.raises(sc.ScenarioError) as exc:
        sc.run("kernel modern\nmap A 2p rw private anon\nmadvise A 2p MERGEABLE\n"
               "ksmd scan 1\n")
    assert exc.value.line == 4 and "run is 0" in exc.value.message


def test_unaligned_write_is_a_scenario_error_not_a_crash() -> None:
    with pytest.raises(sc.ScenarioError) as exc:
        sc.run("map A 4p rw private anon\nwrite A+1 5\n")
    assert exc.value.line == 2 and "aligned" in exc.value.message


# -- running -------------------------------------------------------------------------------------

def test_boot_reads_the_kernel_line_or_the_arguments() -> None:
    s = sc.parse("kernel 2.6.32 ksm=n\n")
    k = sc.boot(s)
    assert (k.profile.name, k.config_ksm) == ("2.6.32", False)
    k = sc.boot(s, "modern", True)
    assert (k.profile.name, k.config_ksm) == ("modern", True)
    assert sc.boot(sc.parse("")).profile.name == "seed"


def test_failed_syscalls_become_results_not_exceptions() -> None:
    results = sc.run("map A 4p rw private anon\nmadvise A+1 4p MERGEABLE\n"
                     "madvise A 8p MERGEABLE\nmunmap A 0\nwrite A+8p 1\n")
    assert [r.errno for r in results] == [None, E.EINVAL, E.ENOMEM, E.EINVAL, E.EFAULT]
    assert [r.outcome() for r in results][1:] == ["-1 EINVAL", "-1 ENOMEM", "-1 EINVAL",
                                                   "-1 EFAULT"]


def test_a_failed_call_ends_with_the_step_that_decided_its_errno() -> None:
    """Trace.reason, which the Explorer shows beside the errno, is that step."""
    results = sc.run(
        "kernel modern\nmap A 4p rw private anon\nmadvise A+1 4p MERGEABLE\n"
        "madvise A 8p MERGEABLE\nmadvise A 4p 99\nmunmap A 0\nmprotect A 8p r\n"
        "mremap A 4p 8p at 0x1001 fixed maymove\nmap B 4p rw private anon at 0x10 fixed\n"
        "write A+8p 1\nmadvise A 4p MERGEABLE\n")
    failed = [r.trace for r in results if r.trace is not None and r.trace.errno]
    assert [t.errno for t in failed] == [E.EINVAL, E.ENOMEM, E.EINVAL, E.EINVAL, E.ENOMEM,
                                         E.EINVAL, E.EINVAL, E.EFAULT]
    reasons = [(t.reason.function, t.reason.message) for t in failed if t.reason]
    assert len(reasons) == len(failed)
    for (function, message), t in zip(reasons[:-1], failed[:-1], strict=True):
        assert kb.errno_name(t.errno or 0) in message, (t.call, function, message)
    assert reasons[-1][0] == "do_user_addr_fault" and "SIGSEGV" in reasons[-1][1]
    assert results[-1].trace is not None and results[-1].trace.reason is None


def test_results_carry_maps_after_each_step_and_the_trace() -> None:
    results = sc.run("kernel modern\nmap A 4p rw private anon\nmadvise A+1p 2p MERGEABLE\n"
                     "fork c\nc: madvise A 4p UNMERGEABLE\n")
    kernel_line, mapped, advised, forked, unmerged = results
    assert kernel_line.trace is None and kernel_line.maps == {}
    assert len(mapped.maps["p1"]) == 1 and len(advised.maps["p1"]) == 3
    assert advised.trace is not None and "ksm_madvise" in advised.trace.functions()
    assert forked.result == 2 and set(forked.maps) == {"p1", "c"}
    assert [len(unmerged.maps[n]) for n in ("p1", "c")] == [3, 1]
    assert mapped.result == mapped.maps["p1"][0].start


def test_setup_statements_take_effect() -> None:
    results = sc.run("kernel 2.6.32\nsysctl max_map_count=1\nmap A 4p rw private anon\n"
                     "madvise A+1p 1p DONTFORK\ninject __ksm_enter\nmadvise A 4p MERGEABLE\n"
                     "madvise A 4p MERGEABLE\nfile ro.bin 4p ro\n"
                     "map B 1p rw shared file=ro.bin\nmap C 2M rw private hugetlb\n"
                     "sysctl nr_hugepages=1\nmap D 2M rw private hugetlb\n")
    assert [r.errno for r in results[3:]] == [E.EAGAIN, None, E.EAGAIN, None, None, E.EACCES,
                                              E.ENOMEM, None, None]


def test_devices_map_with_their_drivers_flags() -> None:
    results = sc.run("kernel 2.6.32\ndevice mem remap_pfn_range\nmap D 4p rw shared device=mem\n"
                     "madvise D 4p MERGEABLE\n")
    (entry,) = results[-1].maps["p1"]
    assert {"io", "pf", "reserved"} <= set(entry.vmflags) and "mg" not in entry.vmflags


def test_run_accepts_text_or_a_scenario_and_an_existing_kernel() -> None:
    k = kb.Kernel("modern")
    results = sc.run("map A 1p rw private anon\n", k)
    assert results[0].result == k.processes[0].vmas[0].start
    assert len(k.log) == 1


MERGE = ("kernel modern\nmap A 4p rw private anon\nwrite A 5 5 6 0\nmadvise A 4p MERGEABLE\n"
         "spawn q\nq: map B 2p rw private anon\nq: write B 5 6\nq: madvise B 2p MERGEABLE\n")


def test_ksmd_statements_merge_pages_as_the_kernel_api_does() -> None:
    """The statements do what the Ksmd and sysfs calls do, step for step."""
    results = sc.run(MERGE + "sysfs pages_to_scan=2\nsysfs run=1\nksmd batch\nksmd scan 2\n"
                     "q: write B 9\nksmd scan 1\nksmd run 500\n")
    k = kb.Kernel("modern")
    procs = [k.spawn("p1"), k.spawn("q")]
    for p, contents in zip(procs, ([5, 5, 6, 0], [5, 6]), strict=True):
        a = p.mmap(len(contents) * P, kb.PROT_READ | kb.PROT_WRITE,
                   kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
        p.write_pages(a, contents)
        p.madvise(a, len(contents) * P, kb.MADV_MERGEABLE)
    k.sysfs["pages_to_scan"] = 2
    k.sysfs["run"] = 1
    batch = k.ksmd.batch()
    assert results[10].result == batch.scanned == 2
    assert results[10].counters == k.ksmd.counters()
    assert len(results[10].traces) == 1 and results[10].trace is results[10].traces[0]
    assert results[11].counters == k.ksmd.full_scans(2)
    procs[1].write_pages(procs[1].vmas[0].start, [9])
    assert results[13].counters == k.ksmd.full_scans(1)
    reports = k.ksmd.run_for(500)
    assert results[14].result == sum(r.scanned for r in reports)
    assert results[14].counters == k.ksmd.counters()
    assert len(results[14].traces) == len(reports)
    assert results[14].counters["pages_sharing"] > 0
    assert results[14].ksm_stat == {"p1": k.ksmd.ksm_stat(procs[0]),
                                    "q": k.ksmd.ksm_stat(procs[1])}
    assert results[14].ksm_stat["q"]["ksm_merging_pages"] == 1
    assert results[8].ksm_stat is not None and results[7].ksm_stat is None  # sysfs; madvise


def test_ksm_stat_only_where_the_kernel_has_it_and_maps_only_when_asked() -> None:
    text = "map A 2p rw private anon\nmadvise A 2p MERGEABLE\nsysfs run=1\nksmd scan 1\n"
    old = sc.run("kernel 2.6.32\n" + text)
    assert old[-1].counters is not None and old[-1].ksm_stat is None
    bare = sc.run("kernel modern\n" + text, maps=False)
    assert all(r.maps == {} for r in bare)
    assert bare[-1].ksm_stat == {"p1": {
        "ksm_rmap_items": 0, "ksm_zero_pages": 0, "ksm_merging_pages": 0,
        "ksm_process_profit": 0, "ksm_merge_any": "no", "ksm_mergeable": "yes"}}


def test_sysfs_writes_give_the_kernels_errno() -> None:
    results = sc.run("kernel modern\nsysfs run=7\nsysfs run=x\nsysfs pages_shared=1\n"
                     "sysfs sleep_millisecs=5\n")
    assert [r.errno for r in results[1:]] == [E.EINVAL, E.EINVAL, E.EACCES, None]
    assert results[-1].counters is not None
    assert sc.run("kernel 2.6.32\nsysfs use_zero_pages=1\n")[1].errno == E.ENOENT


def test_read_prctl_and_spawn() -> None:
    results = sc.run("kernel modern\nspawn a\na: map A 2p rw private anon\na: write A+1p 42\n"
                     "a: read A+1p\na: read A\na: read A+2p\na: prctl PR_GET_MEMORY_MERGE\n"
                     "a: prctl PR_SET_MEMORY_MERGE 1\na: prctl PR_GET_MEMORY_MERGE\n"
                     "a: prctl PR_SET_MEMORY_MERGE 1 1\n")
    assert results[1].result == 1 and set(results[1].maps) == {"a"}
    assert [r.result for r in results[4:6]] == [42, 0]
    assert results[6].errno == E.EFAULT
    assert [r.result for r in results[7:10]] == [0, 0, 1]
    assert results[10].errno == E.EINVAL
    with pytest.raises(sc.ScenarioError, match="exists already"):
        sc.run("spawn a\nspawn a\n")
    assert sc.run("kernel seed\nprctl PR_SET_MEMORY_MERGE 1\n")[1].errno == E.EINVAL
