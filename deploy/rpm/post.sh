# netvsc-watch's RPM %post ($1: 1 on install, 2 on upgrade), as Fedora's %sysusers and
# %systemd_post do it: the service's user, then a daemon-reload only where systemd runs. The
# service is never enabled or started here; an operator does (systemctl enable --now netvsc-watch).
systemd-sysusers netvsc-watch.conf || :
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
