"""HOME in local pods, as container runtimes set it.

Pins: a uid with a passwd entry gets that entry's home; a uid without one (the operator image's 65532)
gets `/`, so programs that ask for the home directory do not fail.
"""

from __future__ import annotations

import pwd

from trainsmart.devcluster.agent.sandbox.runtime_impl import default_home


def test_a_known_uid_gets_its_passwd_home() -> None:
    assert default_home(0) == pwd.getpwuid(0).pw_dir


def test_a_uid_without_passwd_entry_gets_the_root_directory() -> None:
    unknown = next(uid for uid in range(65532, 70000) if uid not in {p.pw_uid for p in pwd.getpwall()})
    assert default_home(unknown) == "/"
