"""The Python binding: its API, its errors, non-UTF-8 paths and threads."""

import os
import threading

import blake3
import pytest

import vst


@pytest.fixture
def repo(tmp_path):
    return vst.Repo.init(tmp_path)


def test_write_commit_read(repo):
    ws = repo.working_set()
    blob = ws.write("src/main.c", b"int main;\n")
    assert blob == blake3.blake3(b"int main;\n").hexdigest()
    assert ws.read("src/main.c") == b"int main;\n"
    first = repo.commit(ws, message="first")
    assert len(first) == 64 and int(first, 16) >= 0
    assert repo.head == first
    assert repo.branches() == {"main": first}
    assert ws.head == first
    for rev in (first, first[:12], "HEAD", "@", "main"):
        assert repo.read(rev, "src/main.c") == b"int main;\n"
    second = repo.commit(ws, message="second, nothing changed")
    assert repo.resolve("HEAD~1") == first
    assert repo.resolve("main") == second


def test_write_many_and_diff(repo):
    ws = repo.working_set()
    ws.write_many([("a.txt", b"a"), ("b.txt", b"b"), ("dir/c.txt", b"c"), ("d", b"d")])
    one = repo.commit(ws, message="one")
    ws.write_many([("a.txt", b"A"), (b"new.txt", bytearray(b"new"))])
    ws.remove("b.txt")
    ws.remove("d")
    ws.write("d/inside", b"now a directory")
    ws.symlink("dir/c.txt", "../a.txt")
    two = repo.commit(ws, message="two")
    assert repo.diff(one, two) == [
        ("a.txt", "modified"),
        ("b.txt", "deleted"),
        ("d", "type_changed"),
        ("d/inside", "added"),
        ("dir/c.txt", "type_changed"),
        ("new.txt", "added"),
    ]
    assert repo.diff(None, one) == [
        ("a.txt", "added"),
        ("b.txt", "added"),
        ("d", "added"),
        ("dir/c.txt", "added"),
    ]
    assert repo.diff(two, two) == []
    # Large enough to be hashed on all cores: the ids are still BLAKE3's.
    big = [(f"big/{i}", os.urandom(1024)) for i in range(100)]
    ws.write_many(big)
    repo.commit(ws, message="three")
    for path, data in big[:5]:
        assert repo.read("HEAD", path) == data


def test_write_many_takes_any_iterable(repo):
    ws = repo.working_set()
    ws.write_many((f"f{i}", str(i).encode()) for i in range(3))
    assert ws.read("f2") == b"2"


def test_snapshot_is_frozen(repo):
    ws = repo.working_set()
    ws.write("a", b"1")
    ws.symlink("link", b"a")
    snap = ws.snapshot()
    ws.write("a", b"2")
    ws.remove("link")
    assert snap.read("a") == b"1"
    assert ws.read("a") == b"2"
    assert "link" in snap and "link" not in ws.snapshot()
    assert snap.walk() == [("a", "file"), ("link", "symlink")]


def test_open_finds_the_repository_above(tmp_path):
    repo = vst.Repo.init(tmp_path)
    ws = repo.working_set()
    ws.write("x", b"x")
    head = repo.commit(ws, message="x")
    del ws, repo  # one writer at a time: the handle must be gone first
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    again = vst.Repo.open(tmp_path / "sub" / "dir")
    assert again.root == tmp_path
    assert again.head == head
    assert again.working_set().read("x") == b"x"


def test_errors_carry_the_library_message(tmp_path, repo):
    ws = repo.working_set()
    with pytest.raises(vst.VstError, match="no such file or directory: missing"):
        ws.read("missing")
    with pytest.raises(vst.VstError, match="no such file or directory: missing"):
        ws.remove("missing")
    with pytest.raises(vst.VstError, match='invalid path "a//b": a name cannot be empty'):
        ws.write("a//b", b"")
    with pytest.raises(vst.VstError, match=r'invalid path "\.\./escape"'):
        ws.write("../escape", b"")
    with pytest.raises(TypeError, match="str or bytes"):
        ws.write(3, b"")
    with pytest.raises(TypeError):
        ws.write("a", "not bytes")
    with pytest.raises(vst.VstError, match="HEAD has no commit yet"):
        repo.read("HEAD", "a")
    ws.write("a", b"a")
    repo.commit(ws, message="a")
    with pytest.raises(vst.VstError, match="is a directory|not a directory"):
        ws.write("a/b", b"")
    with pytest.raises(vst.VstError, match='unknown revision "nope"'):
        repo.read("nope", "a")
    with pytest.raises(vst.VstError, match="history has only 0 ancestors"):
        repo.resolve("HEAD~1")
    with pytest.raises(vst.VstError, match="no such file or directory: b"):
        repo.read("HEAD", "b")
    with pytest.raises(vst.VstError, match="already holds a repository"):
        vst.Repo.init(tmp_path)
    with pytest.raises(vst.VstError, match="not in a vst repository"):
        vst.Repo.open(tmp_path.parent / "no-repo-here")
    # Committing a working set that no longer descends from the branch.
    stale = repo.working_set()
    ws.write("a", b"moved on")
    repo.commit(ws, message="moves main")
    stale.write("a", b"stale")
    with pytest.raises(vst.VstError, match="main"):
        repo.commit(stale, message="refused")
    assert repo.read("HEAD", "a") == b"moved on"


def test_non_utf8_paths_are_bytes(repo):
    ws = repo.working_set()
    name = b"caf\xe9.txt"
    ws.write(name, b"latin-1")
    ws.write("ok.txt", b"utf-8")
    one = repo.commit(ws, message="bytes")
    assert repo.read(one, name) == b"latin-1"
    # The same name as os.fsdecode gives it.
    assert repo.read(one, os.fsdecode(name)) == b"latin-1"
    assert repo.diff(None, one) == [(name, "added"), ("ok.txt", "added")]
    assert (name, "file") in ws.snapshot().walk()


def test_threads_commit_to_different_branches(repo):
    ws = repo.working_set()
    ws.write("base", b"base")
    repo.commit(ws, message="base")
    errors = []

    def work(i):
        try:
            branch = f"thread-{i}"
            ws = repo.working_set(branch=branch)
            for n in range(5):
                ws.write_many([(f"t{i}/{n}/{k}", f"{i}.{n}.{k}".encode()) for k in range(20)])
                repo.commit(ws, message=f"{branch} {n}", branch=branch)
        except Exception as e:  # reported below: a thread's error is not raised
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    branches = repo.branches()
    assert sorted(branches) == ["main", "thread-0", "thread-1", "thread-2", "thread-3"]
    for i in range(4):
        assert repo.read(f"thread-{i}", f"t{i}/4/19") == f"{i}.4.19".encode()
        assert repo.resolve(f"thread-{i}~4") != branches[f"thread-{i}"]
        with pytest.raises(vst.VstError, match="history has only 4 ancestors"):
            repo.resolve(f"thread-{i}~5")


def test_one_working_set_shared_by_threads(repo):
    ws = repo.working_set()

    def work(i):
        for n in range(50):
            ws.write(f"{i}/{n}", b"x" * n)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    repo.commit(ws, message="all")
    assert len([p for p, kind in ws.snapshot().walk() if kind == "file"]) == 200


def test_work_tree(tmp_path):
    repo = vst.Repo.init(tmp_path)
    wt = vst.WorkTree(repo, tmp_path)
    (tmp_path / "a.txt").write_bytes(b"one")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "b.txt").write_bytes(b"two")
    assert wt.status() == [("a.txt", "added"), ("src", "added"), ("src/b.txt", "added")]
    first = wt.commit("first")
    assert first == repo.head
    assert wt.status() == []
    assert wt.commit("nothing changed") is None
    (tmp_path / "a.txt").write_bytes(b"ONE")
    (tmp_path / "src" / "b.txt").unlink()
    # Only what `changed` names is looked at.
    assert wt.status(changed=["a.txt"]) == [("a.txt", "modified")]
    assert wt.status() == [("a.txt", "modified"), ("src/b.txt", "deleted")]
    tree = wt.snapshot(changed=["a.txt"])
    assert len(tree) == 64
    second = wt.commit("second", changed=["a.txt", b"src/b.txt"])
    assert repo.diff(first, second) == [("a.txt", "modified"), ("src/b.txt", "deleted")]
    wt.checkout(first)
    assert (tmp_path / "a.txt").read_bytes() == b"one"
    assert (tmp_path / "src" / "b.txt").read_bytes() == b"two"
    assert repo.head == first  # detached at first
    wt.checkout("main")
    assert (tmp_path / "a.txt").read_bytes() == b"ONE"
    assert repo.head == second
    (tmp_path / "a.txt").write_bytes(b"local change")
    with pytest.raises(vst.VstError, match="in the way: a.txt"):
        wt.checkout(first)
    assert (tmp_path / "a.txt").read_bytes() == b"local change"
    wt.checkout(first, force=True)
    assert (tmp_path / "a.txt").read_bytes() == b"one"


def test_in_memory_working_set():
    ws = vst.WorkingSet()
    assert ws.head is None
    assert ws.write("a/b", b"content") == blake3.blake3(b"content").hexdigest()
    first = ws.commit(message="in memory")
    assert ws.head == first and len(first) == 64
    ws.write_many([("a/c", b"c")])
    second = ws.commit(message="again")
    assert second != first and ws.head == second
    assert ws.read("a/c") == b"c"
    with pytest.raises(vst.VstError, match="no such file or directory: a/d"):
        ws.read("a/d")


def test_bad_branch_name(repo):
    with pytest.raises(vst.VstError, match="bad name"):
        repo.working_set(branch="bad name")
    ws = repo.working_set()
    ws.write("a", b"a")
    with pytest.raises(vst.VstError, match="bad name"):
        repo.commit(ws, message="m", branch="bad name")
