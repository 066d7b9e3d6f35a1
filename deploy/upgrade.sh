#!/usr/bin/env bash
# Zero-downtime upgrade of the systemd-managed Latchkey (docs/operations.md):
#   sudo deploy/upgrade.sh path/to/new/latchkey
# Keeps the current binary as latchkey.previous (to roll back: run this script with it), installs
# the new one, asks the running process to hand over (`systemctl reload`), and waits until the new
# process is the service's main process.
# Environment: LATCHKEY_UNIT (default latchkey), LATCHKEY_BIN (default /usr/local/bin/latchkey).
set -euo pipefail

new=${1:?usage: upgrade.sh NEW_BINARY}
unit=${LATCHKEY_UNIT:-latchkey}
dest=${LATCHKEY_BIN:-/usr/local/bin/latchkey}

"$new" --help >/dev/null # it runs on this machine

old_pid=$(systemctl show -p MainPID --value "$unit")
if [ "$old_pid" = 0 ]; then
    echo "$unit is not running; start it with: systemctl start $unit" >&2
    exit 1
fi

if [ -e "$dest" ]; then
    cp -p "$dest" "$dest.previous"
fi
install -m 0755 "$new" "$dest"
systemctl reload "$unit"

# The new process announces itself once it holds the listening sockets (a second or two).
for _ in $(seq 1 150); do
    pid=$(systemctl show -p MainPID --value "$unit")
    if [ "$pid" != 0 ] && [ "$pid" != "$old_pid" ]; then
        echo "upgraded: $unit now runs as pid $pid; pid $old_pid drains and exits"
        exit 0
    fi
    sleep 0.1
done
echo "the new binary did not take over; $unit still runs as pid $old_pid." >&2
echo "see: journalctl -u $unit --since '-2 min'" >&2
exit 1
