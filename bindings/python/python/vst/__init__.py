"""vst: content-addressed, versioned file trees.

The Python face of the vst library (https://example.invalid/vst): open a
repository, write files into a working set and commit it, read and diff
commits, or snapshot and commit a work tree on disk.

    import vst
    repo = vst.Repo.init("/tmp/demo")
    ws = repo.working_set()
    ws.write("src/main.c", b"int main(void) { return 0; }\\n")
    first = repo.commit(ws, message="first")
    assert repo.read(first, "src/main.c").startswith(b"int main")

Revisions (``rev``) are ``HEAD``, a branch name, a commit id (hex) or a
unique prefix of one, optionally followed by ``~N``. Paths are ``str`` or
``bytes``; paths that are not UTF-8 come back as ``bytes``. Every error of
the library is a :class:`VstError` carrying its message. The GIL is
released while the library hashes, reads and commits.
"""

from ._vst import Repo, Snapshot, VstError, WorkingSet, WorkTree

__all__ = ["Repo", "Snapshot", "VstError", "WorkingSet", "WorkTree"]
