# netvsc-watch's RPM %postun ($1: 0 on removal, 1 on upgrade), as %systemd_postun_with_restart:
# systemd forgets the removed unit, and an upgrade restarts the service only if it was running.
# The user stays, as Fedora's and Debian's packages leave system users (files may still be theirs).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart netvsc-watch.service || :
    fi
fi
