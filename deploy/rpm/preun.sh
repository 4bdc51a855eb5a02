# netvsc-watch's RPM %preun ($1: 0 on removal, 1 on upgrade), as %systemd_preun: on removal stop
# and disable the service where systemd runs; an upgrade leaves it as it is.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now netvsc-watch.service || :
fi
