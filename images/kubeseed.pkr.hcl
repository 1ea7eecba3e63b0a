# kubeseed golden image, built with Packer in your cloud or on a KVM machine.
#
# The same provisioning script as the local builder (`kubeseed image build`): images/provision.sh, so the two
# recipes cannot drift. Both sources start from Debian's own Debian 12 (bookworm) cloud image, run
# provision.sh (packages, kernel modules, sysctls, containerd, the kubelet when pkgs.k8s.io is reachable) and
# install the kubeseed runtime at /opt/kubeseed/kubeseed-runtime.pyz (0755).
#
#   kubeseed image runtime --out images/out/kubeseed-runtime.pyz   # the full runtime zipapp, uploaded below
#   packer init images/kubeseed.pkr.hcl
#   packer build -only 'kubeseed.qemu.debian12' -var role=node images/kubeseed.pkr.hcl
#   packer build -only 'kubeseed.amazon-ebs.debian12' -var role=master -var aws_region=eu-central-1 images/kubeseed.pkr.hcl
#
# Then render payloads without the runtime: kubeseed render node CLUSTER --runtime preinstalled

packer {
  required_plugins {
    qemu = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/qemu"
    }
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "role" {
  type        = string
  default     = "node"
  description = "node or master (a master also gets kubectl when the kubelet can be had)"
  validation {
    condition     = contains(["node", "master"], var.role)
    error_message = "The role must be node or master."
  }
}

variable "kubernetes_minor" {
  type        = string
  default     = "1.35"
  description = "the pkgs.k8s.io stream the kubelet comes from"
}

variable "kubelet" {
  type        = string
  default     = "auto"
  description = "auto: install the kubelet when pkgs.k8s.io is reachable; skip; require: fail without it"
  validation {
    condition     = contains(["auto", "skip", "require"], var.kubelet)
    error_message = "The kubelet setting must be auto, skip or require."
  }
}

variable "runtime_zipapp" {
  type        = string
  default     = "images/out/kubeseed-runtime.pyz"
  description = "the full runtime zipapp, from: kubeseed image runtime --out images/out/kubeseed-runtime.pyz"
}

variable "debian_cloud_image" {
  type    = string
  default = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "debian_cloud_image_checksum" {
  type    = string
  default = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

variable "disk_size" {
  type    = string
  default = "4G"
}

variable "qemu_accelerator" {
  type        = string
  default     = "kvm"
  description = "kvm, or tcg where there is no KVM (slow)"
}

variable "aws_region" {
  type    = string
  default = "eu-central-1"
}

variable "aws_instance_type" {
  type    = string
  default = "t3.small"
}

locals {
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())
  # A one-time password for the qemu build VM's temporary "packer" user (deleted before the image is saved).
  build_password = uuidv4()
}

source "qemu" "debian12" {
  iso_url          = var.debian_cloud_image
  iso_checksum     = var.debian_cloud_image_checksum
  disk_image       = true
  disk_size        = var.disk_size
  format           = "raw"
  accelerator      = var.qemu_accelerator
  headless         = true
  memory           = 2048
  cpus             = 2
  net_device       = "virtio-net"
  disk_interface   = "virtio"
  output_directory = "images/out/packer-qemu-${var.role}"
  vm_name          = "kubeseed-${var.role}.img"

  # NoCloud seed for the build VM only: a temporary user to provision through.
  cd_label = "cidata"
  cd_content = {
    "meta-data" = "instance-id: kubeseed-packer-build\nlocal-hostname: kubeseed-build\n"
    "user-data" = <<-EOF
      #cloud-config
      ssh_pwauth: true
      users:
        - name: packer
          shell: /bin/bash
          sudo: "ALL=(ALL) NOPASSWD:ALL"
          lock_passwd: false
          plain_text_passwd: "${local.build_password}"
    EOF
  }

  ssh_username = "packer"
  ssh_password = local.build_password
  ssh_timeout  = "15m"
  # Leave nothing of the build behind: the temporary user, its sudo rule, password logins.
  shutdown_command = "sudo sh -c 'userdel -rf packer; rm -f /etc/sudoers.d/90-cloud-init-users; sed -i \"s/^PasswordAuthentication yes/PasswordAuthentication no/\" /etc/ssh/sshd_config; cloud-init clean --logs; shutdown -P now'"
}

source "amazon-ebs" "debian12" {
  region        = var.aws_region
  instance_type = var.aws_instance_type
  ami_name      = "kubeseed-${var.role}-debian-12-amd64-${local.stamp}"
  ssh_username  = "admin"

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian's own AWS account
    most_recent = true
  }

  tags = {
    Name            = "kubeseed-${var.role}"
    "kubeseed:role" = var.role
    "kubeseed:k8s"  = var.kubernetes_minor
  }
}

build {
  name    = "kubeseed"
  sources = ["source.qemu.debian12", "source.amazon-ebs.debian12"]

  # The runtime goes to /tmp first; provision.sh installs it at /opt/kubeseed/kubeseed-runtime.pyz, mode 0755.
  provisioner "file" {
    source      = var.runtime_zipapp
    destination = "/tmp/kubeseed-runtime.pyz"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }} all"
    environment_vars = [
      "KUBESEED_ROLE=${var.role}",
      "KUBERNETES_MINOR=${var.kubernetes_minor}",
      "KUBESEED_KUBELET=${var.kubelet}",
      "KUBESEED_RUNTIME=/tmp/kubeseed-runtime.pyz",
    ]
  }

  # The build instance's login key (Packer's temporary key pair) stays out of the AMI.
  provisioner "shell" {
    only   = ["amazon-ebs.debian12"]
    inline = ["sudo rm -f /home/admin/.ssh/authorized_keys"]
  }
}
