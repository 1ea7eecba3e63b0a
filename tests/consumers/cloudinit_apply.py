"""Apply a user-data file's write_files with Debian's own cloud-init code, into a directory.

Run by the tests with the interpreter cloud-init is installed for (``/usr/bin/python3``):

    python3 cloudinit_apply.py USER_DATA ROOT

It decodes the user-data as cloud-init does (gzip detection, part type detection, YAML loading), then
runs the write_files module's own ``write_files()`` with every path moved under ROOT, and prints what the
test needs to check the rest (part type, runcmd, users, hostname) as JSON on stdout.
"""

import json
import os
import sys

from cloudinit import handlers, user_data, util
from cloudinit.config import cc_write_files


def main() -> None:
    blob = open(sys.argv[1], "rb").read()
    root = sys.argv[2]
    message = user_data.convert_string(blob)
    payload = message.get_payload(decode=True)
    part_type = handlers.type_from_starts_with(payload.decode())
    cfg = util.load_yaml(payload.decode())
    files = []
    for entry in cfg.get("write_files", []):
        moved = dict(entry)
        moved["path"] = os.path.join(root, entry["path"].lstrip("/"))
        files.append(moved)
    cc_write_files.write_files("write_files", files, "root:root")
    keys = ("runcmd", "users", "hostname", "preserve_hostname", "bootcmd")
    print(json.dumps({"part_type": part_type, **{k: cfg.get(k) for k in keys}}))


if __name__ == "__main__":
    main()
