#!/bin/sh
# Provision a Debian 12 (bookworm) machine as a kubeseed golden image.
#
# The one provisioning script for both recipes, so they cannot drift:
#   - the local builder (`kubeseed image build`) runs it inside the debootstrap'd tree (systemd-nspawn, no boot);
#   - the Packer template (images/kubeseed.pkr.hcl) runs it on the booted build VM (qemu or amazon-ebs).
#
# Usage: provision.sh [all|system|runtime|cleanup]        (as root; default all = system, runtime, cleanup)
#   system    packages, kernel modules, sysctls, swap off, containerd's config, the kubelet when it can be had
#   runtime   installs $KUBESEED_RUNTIME (the runtime zipapp) at /opt/kubeseed/kubeseed-runtime.pyz, mode 0755
#   cleanup   forgets this build's identity (machine-id, SSH host keys, cloud-init state, apt lists)
#
# Environment:
#   KUBESEED_ROLE          node (default) or master: a master also gets kubectl when the kubelet can be had
#   KUBERNETES_MINOR       the pkgs.k8s.io stream, default 1.35
#   KUBESEED_KUBELET       auto (default): install the kubelet from pkgs.k8s.io when it is reachable;
#                          skip: do not try (say so); require: fail when it cannot be had
#   KUBESEED_RUNTIME       the runtime zipapp to install (runtime step), default /tmp/kubeseed-runtime.pyz
#   KUBESEED_IN_CHROOT     1 when run in an image tree rather than on a booted machine: no service is started
#                          and the running system (swap, sysctls, modules) is left alone
set -eu

ROLE=${KUBESEED_ROLE:-node}
MINOR=${KUBERNETES_MINOR:-1.35}
KUBELET=${KUBESEED_KUBELET:-auto}
RUNTIME_SRC=${KUBESEED_RUNTIME:-/tmp/kubeseed-runtime.pyz}
IN_CHROOT=${KUBESEED_IN_CHROOT:-0}
RUNTIME_DST=/opt/kubeseed/kubeseed-runtime.pyz
K8S_REPO="https://pkgs.k8s.io/core:/stable:/v${MINOR}/deb/"
export DEBIAN_FRONTEND=noninteractive

# Debian packages of the image. Kept in this order (the local builder reads this block to key its cache).
# BEGIN PACKAGES
PACKAGES="
systemd-sysv
systemd-timesyncd
dbus
udev
linux-image-amd64
initramfs-tools
cloud-init
cloud-guest-utils
e2fsprogs
fdisk
ifupdown
isc-dhcp-client
openssh-server
sudo
ca-certificates
python3
python3-yaml
python3-cryptography
python3-cffi-backend
containerd
runc
iproute2
util-linux
mount
conntrack
kmod
procps
locales
zstd
containernetworking-plugins
"
# END PACKAGES

step() { echo "provision: $*" >&2; }

case "$ROLE" in node|master) ;; *) echo "provision: KUBESEED_ROLE must be node or master, not $ROLE" >&2; exit 2;; esac

apt_get() { apt-get -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false "$@"; }

no_services_during_install() {
    # In an image tree nothing may start: package scripts ask policy-rc.d, which says no.
    if [ "$IN_CHROOT" = 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
}

k8s_repo_reachable() {
    python3 - "$K8S_REPO" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "Release.key", timeout=10).read()
except Exception as e:
    print(f"provision: {sys.argv[1]} is not reachable: {e}", file=sys.stderr)
    sys.exit(1)
EOF
}

install_kubelet() {
    wanted="kubelet cri-tools"
    [ "$ROLE" = master ] && wanted="$wanted kubectl"
    case "$KUBELET" in
        skip)
            step "KUBELET NOT INSTALLED (KUBESEED_KUBELET=skip): install $wanted from $K8S_REPO before use"
            return 0;;
        auto|require) ;;
        *) echo "provision: KUBESEED_KUBELET must be auto, skip or require, not $KUBELET" >&2; exit 2;;
    esac
    if ! k8s_repo_reachable; then
        if [ "$KUBELET" = require ]; then
            echo "provision: the kubelet is required (KUBESEED_KUBELET=require) but $K8S_REPO cannot be reached" >&2
            exit 1
        fi
        step "KUBELET NOT INSTALLED: $K8S_REPO cannot be reached from this build machine."
        step "  The image has no kubelet; install it on the machine (apt-get install $wanted from that"
        step "  repository) or build where the repository is reachable. Preflight will say so at first boot."
        return 0
    fi
    step "installing $wanted v${MINOR} from $K8S_REPO"
    install -d -m 0755 /etc/apt/keyrings
    python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=30).read())' \
        "${K8S_REPO}Release.key" > /etc/apt/keyrings/kubernetes-apt-keyring.asc
    echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.asc] $K8S_REPO /" \
        > /etc/apt/sources.list.d/kubernetes.list
    apt_get update -q
    # shellcheck disable=SC2086
    apt_get install -y -q $wanted
    # shellcheck disable=SC2086
    apt-mark hold $wanted >/dev/null
}

do_system() {
    no_services_during_install
    step "apt-get update, upgrade"
    apt_get update -q
    apt_get dist-upgrade -y -q
    # shellcheck disable=SC2086
    step "installing packages:" $PACKAGES
    # shellcheck disable=SC2086
    apt_get install -y -q $PACKAGES
    install_kubelet

    step "kernel modules and sysctls for Kubernetes"
    printf 'overlay\nbr_netfilter\n' > /etc/modules-load.d/k8s.conf
    cat > /etc/sysctl.d/k8s.conf <<'EOF'
# Kubernetes: forward pod traffic, and let iptables see bridged traffic (br_netfilter).
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
EOF

    step "swap off"
    sed -i '/^[^#].*[[:space:]]swap[[:space:]]/s/^/# kubeseed: the kubelet wants no swap # /' /etc/fstab 2>/dev/null || true
    if [ "$IN_CHROOT" != 1 ]; then
        swapoff -a || true
        modprobe overlay || true
        modprobe br_netfilter || true
        sysctl --system >/dev/null || true
    fi

    step "containerd: systemd cgroup driver (as the kubelet's cgroupDriver: systemd)"
    mkdir -p /etc/containerd
    containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml.new
    grep -q 'SystemdCgroup = true' /etc/containerd/config.toml.new
    mv /etc/containerd/config.toml.new /etc/containerd/config.toml
    systemctl enable containerd >/dev/null 2>&1 || true

    step "CNI plugins: Debian's containernetworking-plugins where CNI add-ons and containerd look (/opt/cni/bin)"
    mkdir -p /opt/cni/bin
    for plugin in /usr/lib/cni/*; do
        [ -e "/opt/cni/bin/${plugin##*/}" ] || ln -s "$plugin" "/opt/cni/bin/${plugin##*/}"
    done

    step "ssh: host keys made at start when missing (cloud-init makes them when it runs; this covers boots without it)"
    mkdir -p /etc/systemd/system/ssh.service.d
    cat > /etc/systemd/system/ssh.service.d/kubeseed-host-keys.conf <<'EOF'
# kubeseed golden image: the image carries no SSH host keys (every machine makes its own)
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF

    step "locale: en_US.UTF-8 (cloud-init's default locale) generated"
    sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
    locale-gen >/dev/null

    step "cloud-init: the node name resolves (/etc/hosts), as kubeadm's Hostname check wants"
    cat > /etc/cloud/cloud.cfg.d/10_kubeseed.cfg <<'EOF'
# kubeseed golden image
manage_etc_hosts: true
EOF
}

do_runtime() {
    [ -f "$RUNTIME_SRC" ] || { echo "provision: runtime zipapp not found at $RUNTIME_SRC (KUBESEED_RUNTIME)" >&2; exit 2; }
    step "installing the kubeseed runtime at $RUNTIME_DST"
    install -D -m 0755 -o root -g root "$RUNTIME_SRC" "$RUNTIME_DST"
    python3 "$RUNTIME_DST" --version >&2
}

do_cleanup() {
    step "cleanup: machine-id, SSH host keys, cloud-init state, apt lists"
    apt_get clean
    rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*
    rm -f /etc/ssh/ssh_host_*
    if command -v cloud-init >/dev/null; then cloud-init clean --logs >/dev/null 2>&1 || true; fi
    rm -rf /var/lib/cloud/*
    : > /etc/machine-id
    rm -f /var/lib/dbus/machine-id
    find /var/log -type f \( -name '*.log' -o -name '*.gz' \) -delete
    rm -f /var/log/journal/*/*.journal 2>/dev/null || true
}

case "${1:-all}" in
    all) do_system; do_runtime; do_cleanup;;
    system) do_system;;
    runtime) do_runtime;;
    cleanup) do_cleanup;;
    *) echo "usage: provision.sh [all|system|runtime|cleanup]" >&2; exit 2;;
esac
