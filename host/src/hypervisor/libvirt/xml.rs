//! Reading a libvirt domain's live XML: the host end of a virtio-serial
//! channel, the virtio-scsi controller, the disks; and writing the `<disk>`
//! element of the container's CD.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};

/// What a domain's XML says about where a CD can go and what is there.
#[derive(Debug)]
pub(crate) struct DomainXml<'a> {
    text: &'a str,
    doc: Document<'a>,
}

/// One `<disk>` of a domain.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Disk<'a> {
    pub alias: Option<&'a str>,
    pub source: Option<&'a str>,
    /// The `<disk>` element's own text, as libvirt wrote it (what a detach
    /// hands back to libvirt).
    pub element: &'a str,
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

impl<'a> DomainXml<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Self, roxmltree::Error> {
        Ok(Self {
            text,
            doc: Document::parse(text)?,
        })
    }

    fn devices(&self) -> impl Iterator<Item = Node<'_, 'a>> {
        self.doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name("devices"))
            .flat_map(|d| d.children().filter(Node::is_element))
    }

    /// The Unix socket of the virtio-serial channel named `port` that the
    /// hypervisor listens on (`<source mode='bind' path=…/>`).
    pub(crate) fn channel_socket(&self, port: &str) -> Option<PathBuf> {
        self.devices()
            .filter(|n| n.has_tag_name("channel") && n.attribute("type") == Some("unix"))
            .find(|n| {
                child(*n, "target").is_some_and(|t| {
                    t.attribute("type") == Some("virtio") && t.attribute("name") == Some(port)
                })
            })
            .and_then(|n| child(n, "source"))
            .filter(|s| s.attribute("mode").is_none_or(|m| m == "bind"))
            .and_then(|s| s.attribute("path"))
            .map(PathBuf::from)
    }

    /// The index of the first virtio-scsi controller.
    pub(crate) fn virtio_scsi(&self) -> Option<u32> {
        self.devices()
            .filter(|n| {
                n.has_tag_name("controller")
                    && n.attribute("type") == Some("scsi")
                    && n.attribute("model") == Some("virtio-scsi")
            })
            .find_map(|n| n.attribute("index")?.parse().ok())
    }

    pub(crate) fn disks(&self) -> Vec<Disk<'_>> {
        self.devices()
            .filter(|n| n.has_tag_name("disk"))
            .map(|n| Disk {
                alias: child(n, "alias").and_then(|a| a.attribute("name")),
                source: child(n, "source").and_then(|s| s.attribute("file").or(s.attribute("dev"))),
                element: &self.text[n.range()],
            })
            .collect()
    }

    /// Every disk's target device name (`sda`, `vda`, ...).
    fn targets(&self) -> HashSet<&str> {
        self.devices()
            .filter(|n| n.has_tag_name("disk"))
            .filter_map(|n| child(n, "target")?.attribute("dev"))
            .collect()
    }

    /// Units taken on bus 0, target 0 of SCSI controller `controller`.
    fn units(&self, controller: u32) -> HashSet<u32> {
        let c = controller.to_string();
        self.devices()
            .filter(|n| n.has_tag_name("disk") || n.has_tag_name("hostdev"))
            .filter_map(|n| child(n, "address"))
            .filter(|a| {
                a.attribute("type") == Some("drive")
                    && a.attribute("controller").unwrap_or("0") == c
                    && a.attribute("bus").unwrap_or("0") == "0"
                    && a.attribute("target").unwrap_or("0") == "0"
            })
            .filter_map(|a| a.attribute("unit")?.parse().ok())
            .collect()
    }

    /// A free SCSI target name (`sdX`) and a free unit on `controller`.
    pub(crate) fn free_slot(&self, controller: u32) -> Option<(String, u32)> {
        let taken = self.targets();
        let dev = (0..26 * 27)
            .map(scsi_name)
            .find(|n| !taken.contains(n.as_str()))?;
        let units = self.units(controller);
        // virtio-scsi has 16384 LUNs per target; 256 are plenty.
        let unit = (0..256).find(|u| !units.contains(u))?;
        Some((dev, unit))
    }
}

/// `sda` … `sdz`, `sdaa` … : the `n`-th SCSI disk name.
fn scsi_name(n: usize) -> String {
    let letter = |i: usize| char::from(b'a' + (i % 26) as u8);
    if n < 26 {
        format!("sd{}", letter(n))
    } else {
        format!("sd{}{}", letter(n / 26 - 1), letter(n))
    }
}

/// Escapes text for an XML attribute.
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The `<disk>` of a read-only SCSI CD holding `iso`.
pub(crate) fn cdrom(iso: &Path, dev: &str, alias: &str, controller: u32, unit: u32) -> String {
    format!(
        "<disk type='file' device='cdrom'>\
         <driver name='qemu' type='raw'/>\
         <source file='{}'/>\
         <target dev='{}' bus='scsi'/>\
         <readonly/>\
         <alias name='{}'/>\
         <address type='drive' controller='{controller}' bus='0' target='0' unit='{unit}'/>\
         </disk>",
        attr(&iso.to_string_lossy()),
        attr(dev),
        attr(alias),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<domain type='qemu' id='1'>
  <name>vm1</name>
  <devices>
    <disk type='file' device='disk'>
      <source file='/img/data.img' index='1'/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/ds/attache-agent-1.iso'/>
      <target dev='sda' bus='scsi'/>
      <readonly/>
      <alias name='ua-attache-cd-1234'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'><alias name='scsi0'/></controller>
    <channel type='unix'>
      <source mode='bind' path='/run/vm1.qga'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='/run/vm1 &amp; data'/>
      <target type='virtio' name='attache.data'/>
    </channel>
  </devices>
</domain>"#;

    #[test]
    fn reads_what_the_driver_needs() {
        let x = DomainXml::parse(XML).unwrap();
        assert_eq!(
            x.channel_socket("attache.data"),
            Some(PathBuf::from("/run/vm1 & data"))
        );
        assert_eq!(x.channel_socket("nope"), None);
        assert_eq!(x.virtio_scsi(), Some(0));
        let disks = x.disks();
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[1].alias, Some("ua-attache-cd-1234"));
        assert_eq!(disks[1].source, Some("/ds/attache-agent-1.iso"));
        assert!(disks[1]
            .element
            .starts_with("<disk type='file' device='cdrom'>"));
        assert!(disks[1].element.ends_with("</disk>"));
        assert_eq!(x.free_slot(0), Some(("sdb".into(), 1)));
    }

    #[test]
    fn a_cdrom_element_is_escaped_and_parses() {
        let d = cdrom(Path::new("/ds/a'b.iso"), "sdb", "ua-attache-cd-x", 0, 3);
        let doc = Document::parse(&d).unwrap();
        let src = doc
            .descendants()
            .find(|n| n.has_tag_name("source"))
            .unwrap();
        assert_eq!(src.attribute("file"), Some("/ds/a'b.iso"));
        assert_eq!(scsi_name(0), "sda");
        assert_eq!(scsi_name(25), "sdz");
        assert_eq!(scsi_name(26), "sdaa");
        assert_eq!(scsi_name(27 * 26 - 1), "sdzz");
    }
}
