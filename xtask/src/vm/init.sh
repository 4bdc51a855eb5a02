#!/bin/busybox sh
# Guest init: mount, load the NIC drivers, then run what the host asked for (kernel command line
# `nvw.args=` with commas for spaces) with its stdout on the results port (/dev/ttyS1) and its
# stderr on the console (/dev/ttyS0, a log file on the host). `nvw.nics=N` waits for N eth*.
/bin/busybox --install -s /bin
# The initramfs root comes world-writable; DPDK's EAL refuses plugins under such a directory.
chmod 755 /
export PATH=/bin
mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /etc/nvw-modules); do
    insmod "/lib/modules/$module.ko" || echo "insmod $module failed" >/dev/console
done
ip link set lo up
# DPDK guests: nvw.hugepages=N 2 MiB pages on /dev/hugepages, and EAL's runtime directory.
pages=$(sed -n 's/.*nvw\.hugepages=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$pages" ]; then
    mkdir -p /dev/hugepages /var/run
    mount -t hugetlbfs nodev /dev/hugepages
    echo "$pages" >/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
fi
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1

arg() { sed -n "s/.*nvw\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
nics=$(arg nics)
tries=0
while [ "$(ls /sys/class/net | grep -c '^eth')" -lt "${nics:-0}" ] && [ $tries -lt 200 ]; do
    sleep 0.05
    tries=$((tries + 1))
done
echo "{\"guest\":\"booted\",\"kernel\":\"$(uname -r)\",\"uptime_s\":$(cut -d' ' -f1 /proc/uptime),\"nics\":\"$(ls /sys/class/net | tr '\n' ' ')\"}" >&3

args=$(arg args | tr ',' ' ')
# shellcheck disable=SC2086
/bin/$args >&3 2>/dev/console &
agent=$!

# Commands from the host, one per line: "<id> <shell command>"; each is answered on the results
# port with {"guest":"done","id":<id>,"status":<exit status>}. $AGENT is the agent's pid.
export AGENT=$agent
while read -r id command; do
    sh -c "$command" >/dev/console 2>&1
    status=$?
    echo "{\"guest\":\"done\",\"id\":$id,\"status\":$status}" >&3
done </dev/ttyS1 &

wait $agent
echo "{\"guest\":\"exited\",\"status\":$?}" >&3
poweroff -f
