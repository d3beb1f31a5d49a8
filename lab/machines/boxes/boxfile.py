"""A .box per provider from the disk, and the catalogue that lets Vagrant add them with a version.

- libvirt: a qcow2 disk (`box.img`), `metadata.json` with its virtual size,
  a Vagrantfile;
- VirtualBox: a streamOptimized VMDK, `box.ovf` describing one VM (SATA
  disk, NAT NIC), `metadata.json`, a Vagrantfile with the OVF's MAC.

Each also carries `reglab.json`: what was built, from which package
versions, from which mirror, when. The texts are pure functions;
`make_box` converts the disk with qemu-img and writes the box atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.common.files import replaced_whole
from lab.machines.boxes.cache import digest
from lab.machines.boxes.disk import CONVERT_TIMEOUT, Disk
from lab.machines.boxes.rootfs import DEBIAN_MAJOR
from lab.machines.host import Runner

PROVIDERS = ("libvirt", "virtualbox")
MEMORY_MB = 1024
CPUS = 2
VMDK_NAME = "box-disk001.vmdk"


def mac_address(key: str) -> str:
    """A MAC in VirtualBox's range (08:00:27), fixed per recipe, as Vagrant's base_mac spells it."""
    return "080027" + digest(f"mac/{key}")[:6].upper()


def libvirt_metadata(virtual_size_gb: int) -> dict[str, Any]:
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_size_gb}


def virtualbox_metadata() -> dict[str, Any]:
    return {"provider": "virtualbox"}


def libvirt_vagrantfile() -> str:
    return (
        "# reglab/debian12 for vagrant-libvirt: virtio disk and NIC (eth0), serial console on ttyS0\n"
        'Vagrant.configure("2") do |config|\n'
        '  config.vm.synced_folder ".", "/vagrant", type: "rsync"\n'
        "  config.vm.provider :libvirt do |lv|\n"
        '    lv.disk_bus = "virtio"\n'
        '    lv.nic_model_type = "virtio"\n'
        "  end\n"
        "end\n"
    )


def virtualbox_vagrantfile(mac: str) -> str:
    """base_mac: Vagrant gives the NAT NIC this MAC, the one box.ovf names."""
    return (
        "# reglab/debian12 for VirtualBox: no guest additions, so /vagrant is synced with rsync\n"
        'Vagrant.configure("2") do |config|\n'
        f'  config.vm.base_mac = "{mac}"\n'
        '  config.vm.synced_folder ".", "/vagrant", type: "rsync"\n'
        "end\n"
    )


def ovf(name: str, capacity_bytes: int, mac: str, disk_uuid: str, machine_uuid: str,
        memory_mb: int = MEMORY_MB, cpus: int = CPUS) -> str:
    """The OVF 1.0 description VirtualBox imports: one VM, the VMDK on a SATA (AHCI)
    controller, one NAT NIC (Intel PRO/1000), memory and CPUs.

    The `vbox:Machine` part is what VirtualBox's own exports carry; VirtualBox
    reads the MAC and the disk's attachment from it, the rest from the DMTF part.
    """
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" \
xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" \
xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="{VMDK_NAME}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity_bytes}" ovf:diskId="vmdisk1" ovf:fileRef="file1" \
ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" vbox:uuid="{disk_uuid}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT">
      <Description>Logical network used by this appliance.</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96">
      <Info>The kind of installed guest operating system</Info>
      <Description>Debian_64</Description>
      <vbox:OSType ovf:required="false">Debian_64</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>{cpus} virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>{memory_mb} MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{memory_mb} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory_mb}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>sataController0</rasd:Caption>
        <rasd:Description>SATA Controller</rasd:Description>
        <rasd:ElementName>sataController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>AHCI</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.16-linux" uuid="{{{machine_uuid}}}" name="{name}" \
OSType="Debian_64">
      <ovf:Info>Complete VirtualBox machine configuration in VirtualBox format</ovf:Info>
      <Hardware>
        <CPU count="{cpus}"/>
        <Memory RAMSize="{memory_mb}"/>
        <Boot>
          <Order position="1" device="HardDisk"/>
          <Order position="2" device="None"/>
          <Order position="3" device="None"/>
          <Order position="4" device="None"/>
        </Boot>
        <Network>
          <Adapter slot="0" enabled="true" MACAddress="{mac}" type="82540EM">
            <NAT/>
          </Adapter>
        </Network>
        <UART>
          <Port slot="0" enabled="false" IOBase="0x3f8" IRQ="4" hostMode="Disconnected"/>
        </UART>
        <AudioAdapter enabled="false"/>
      </Hardware>
      <StorageControllers>
        <StorageController name="SATA Controller" type="AHCI" PortCount="1" useHostIOCache="false" \
Bootable="true">
          <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
            <Image uuid="{{{disk_uuid}}}"/>
          </AttachedDevice>
        </StorageController>
      </StorageControllers>
    </vbox:Machine>
  </VirtualSystem>
</Envelope>
"""


def catalog(name: str, version: str, boxes: Mapping[str, tuple[Path, str]], description: str) -> dict[str, Any]:
    """A Vagrant box catalogue (metadata JSON): what lets a local .box be added with a version."""
    return {
        "name": name,
        "description": description,
        "versions": [{
            "version": version,
            "providers": [
                {"name": provider, "url": path.resolve().as_uri(), "checksum_type": "sha256", "checksum": checksum}
                for provider, (path, checksum) in sorted(boxes.items())
            ],
        }],
    }


def virtual_size(image: Path, run: Runner) -> int:
    return int(json.loads(run(["qemu-img", "info", "--output=json", image]).stdout)["virtual-size"])


def write_box(target: Path, members: Mapping[str, Path | str]) -> str:
    """Tar the box's files (paths, or text for small ones) into `target` atomically; its sha256."""
    with replaced_whole(target) as partial:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as box:
            for name, content in members.items():
                if isinstance(content, Path):
                    box.add(content, arcname=name, recursive=False)
                else:
                    data = content.encode()
                    entry = tarfile.TarInfo(name)
                    entry.size, entry.mode, entry.mtime = len(data), 0o644, int(time.time())
                    box.addfile(entry, io.BytesIO(data))
        hashed = hashlib.sha256()
        with open(partial, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hashed.update(chunk)
    return hashed.hexdigest()


def make_box(provider: str, disk: Disk, work: Path, target: Path, info: dict[str, Any], key: str,
             run: Runner) -> str:
    """One provider's .box from the raw disk; returns its sha256."""
    about = json.dumps(info, indent=2) + "\n"
    if provider == "libvirt":
        image = work / "box.img"
        run(["qemu-img", "convert", "-O", "qcow2", disk.raw, image], timeout=CONVERT_TIMEOUT)
        size_gb = -(-virtual_size(image, run) // 1024**3)
        members: dict[str, Path | str] = {
            "metadata.json": json.dumps(libvirt_metadata(size_gb)) + "\n",
            "Vagrantfile": libvirt_vagrantfile(),
            "reglab.json": about,
            "box.img": image,
        }
    else:
        vmdk = work / VMDK_NAME
        run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", disk.raw, vmdk],
            timeout=CONVERT_TIMEOUT)
        mac = mac_address(key)
        members = {
            "metadata.json": json.dumps(virtualbox_metadata()) + "\n",
            "Vagrantfile": virtualbox_vagrantfile(mac),
            "reglab.json": about,
            # The VM's name: the box's own (reglab/debian13 -> reglab-debian13).
            "box.ovf": ovf(str(info.get("name", f"reglab/debian{DEBIAN_MAJOR}")).replace("/", "-"),
                           virtual_size(vmdk, run), mac,
                           str(uuid.uuid4()), str(uuid.uuid4())),
            VMDK_NAME: vmdk,
        }
    try:
        return write_box(target, members)
    finally:
        for path in members.values():
            if isinstance(path, Path):
                path.unlink(missing_ok=True)

