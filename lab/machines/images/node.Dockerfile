# A VM-like machine for Vagrant's docker provider: systemd as PID 1, sshd,
# sudo and a `vagrant` user. No Docker here: provisioning installs it, as on a VM.
ARG BASE
FROM ${BASE}
ENV container=docker
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      systemd systemd-sysv dbus openssh-server sudo iproute2 iputils-ping \
      ca-certificates procps less \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && systemctl mask systemd-udevd.service systemd-udevd-kernel.socket \
      systemd-udevd-control.socket getty.target console-getty.service \
      systemd-logind.service sys-kernel-config.mount sys-kernel-debug.mount \
      systemd-remount-fs.service systemd-modules-load.service \
 && systemctl enable ssh \
 && rm -f /etc/ssh/ssh_host_* \
 && : > /etc/machine-id \
 && rm -f /var/lib/dbus/machine-id && ln -s /etc/machine-id /var/lib/dbus/machine-id \
 && mkdir -p /etc/systemd/system/ssh.service.d \
 && printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
      > /etc/systemd/system/ssh.service.d/hostkeys.conf \
 && useradd --create-home --shell /bin/bash vagrant \
 && echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant \
 && chmod 0440 /etc/sudoers.d/vagrant \
 && install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
COPY --chown=vagrant:vagrant vagrant.pub /home/vagrant/.ssh/authorized_keys
RUN chmod 0600 /home/vagrant/.ssh/authorized_keys
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
