//! The tenant network: where a container's address comes from and what it
//! may reach.
//!
//! A tenant is root in their container, so nothing inside it can be
//! trusted to keep to its address or its neighbours. Everything here is
//! therefore enforced by Incus on the host side:
//!
//! - The address is chosen here, under our lock, and pinned on the NIC
//!   before the container first starts, with `security.ipv4_filtering`,
//!   `security.mac_filtering` and `security.port_isolation`: from the first
//!   packet a tenant can send only from its own address and MAC, and cannot
//!   reach its neighbours' ports on the bridge at all.
//! - The network carries our ACL ([`ACL`]): traffic from tenants to
//!   link-local addresses (the cloud's metadata server), to the tenant
//!   subnet (neighbours routed through the gateway, and the bastion's
//!   gateway address), to the bastion's other addresses and to the admin's
//!   `deny-egress` ranges is refused. DHCP and DNS on the gateway stay
//!   open: Incus puts its baseline service rules before any ACL.
//!
//! The ACL sits on the network rather than on each NIC because Incus can
//! apply NIC-level ACLs on a bridge only with bridge-family conntrack and
//! reject (`nf_conntrack_bridge`), which many kernels lack; the network's
//! ACL works with the inet family on every nftables or xtables host.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::error::Refused;
use crate::exec::Cmd;
use crate::incus::{Incus, Instance, PROXY_DEVICE};

/// The network ACL `host init` keeps on the tenant network.
pub const ACL: &str = "containarium-tenants";

/// What the tenant network's NIC settings on every tenant container are:
/// filtering in force from the first boot.
pub const NIC_SECURITY: [(&str, &str); 3] = [
    ("security.port_isolation", "true"),
    ("security.mac_filtering", "true"),
    ("security.ipv4_filtering", "true"),
];

/// An IPv4 network in CIDR form, e.g. `10.128.0.0/9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> Cidr {
        Cidr {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix: self.prefix,
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address or CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?} has no valid prefix length (0-32)"))?;
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The managed bridge tenants are attached to, as Incus describes it.
#[derive(Debug, Clone)]
pub struct TenantNet {
    pub name: String,
    /// The bridge's own address and prefix, e.g. 10.197.83.1/24.
    pub gateway: Cidr,
    /// Whether the network gives tenants IPv6 (`ipv6.address` set and not
    /// `none`), which no tenant network may: `require_ipv4_only`.
    pub ipv6: bool,
    /// The ACLs attached to the network (`security.acls`).
    pub acls: Vec<String>,
    /// The addresses dnsmasq may lease to anyone who asks
    /// (`ipv4.dhcp.ranges`); `None` when unset, which leaves it the whole
    /// subnet. Never pinned: see [`TenantNet::dynamic_range`].
    pub dhcp_ranges: Option<Vec<(Ipv4Addr, Ipv4Addr)>>,
}

#[derive(Deserialize)]
struct NetworkJson {
    #[serde(default)]
    managed: bool,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
}

impl TenantNet {
    /// The network that `create` attaches eth0 to: `configured` (config
    /// file's `network`), else the default profile's eth0.
    pub fn probe(incus: &Incus, configured: Option<&str>) -> Result<TenantNet> {
        let name = match configured {
            Some(name) => name.to_string(),
            None => profile_network(incus)?,
        };
        let out = incus.probe(&incus.query_cmd(&format!("/1.0/networks/{name}")))?;
        parse_network(&name, &out.stdout)
    }

    /// Every host address of the subnet: without its network address, the
    /// gateway and the broadcast address.
    fn subnet_hosts(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let net = u32::from(self.gateway.network().addr);
        let size = 1u64 << (32 - u32::from(self.gateway.prefix));
        let gateway = self.gateway.addr;
        (1..size.saturating_sub(1))
            .map(move |i| Ipv4Addr::from(net + i as u32))
            .filter(move |ip| *ip != gateway)
    }

    /// Host addresses a tenant may be given: the subnet's, outside the
    /// DHCP ranges.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.subnet_hosts().filter(|ip| !self.leasable(*ip))
    }

    /// Whether dnsmasq would lease `ip` to whoever asks first (a made-up
    /// MAC from inside a tenant included).
    pub fn leasable(&self, ip: Ipv4Addr) -> bool {
        match &self.dhcp_ranges {
            None => true,
            Some(ranges) => ranges.iter().any(|(a, b)| (*a..=*b).contains(&ip)),
        }
    }

    /// The DHCP range `host init` gives a tenant network whose range is
    /// unset: the top eighth of its host addresses, at most 8 and at least
    /// one. Tenants get pinned addresses below it, which dnsmasq hands only
    /// to the MAC Incus registered for them: nobody can lease one first.
    pub fn dynamic_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        let hosts: Vec<Ipv4Addr> = self.subnet_hosts().collect();
        let n = (hosts.len() / 8).clamp(1, 8);
        let top = &hosts[hosts.len().saturating_sub(n)..];
        (top[0], top[top.len() - 1])
    }

    /// Whether our ACL is attached.
    pub fn is_guarded(&self) -> bool {
        self.acls.iter().any(|a| a == ACL)
    }

    /// Refuses (one line, saying what is missing) unless tenants on this
    /// network would be filtered: fail closed. IPv6 is checked first: it is
    /// the one gap `host init` cannot close.
    pub fn require_guarded(&self, firewall: &str) -> Result<()> {
        self.require_ipv4_only()?;
        self.require_acl(firewall)?;
        if let Some(why) = self.dhcp_problem() {
            bail!(Refused(format!(
                "tenant network {} {why}: run `containarium host init`",
                self.name
            )));
        }
        Ok(())
    }

    /// Why a tenant could lease a pinned address first, if it could.
    pub fn dhcp_problem(&self) -> Option<String> {
        self.dhcp_ranges.is_none().then(|| {
            "leases any address to whoever asks (ipv4.dhcp.ranges is unset), so a tenant \
             could lease the next one first"
                .to_string()
        })
    }

    /// [`Self::require_guarded`] without IPv6 and the DHCP range: the
    /// firewall and our ACL.
    pub fn require_acl(&self, firewall: &str) -> Result<()> {
        let name = &self.name;
        require_firewall(firewall)?;
        if !self.is_guarded() {
            bail!(Refused(format!(
                "tenant network {name} does not carry the {ACL} network ACL: run `containarium host init`"
            )));
        }
        Ok(())
    }

    /// Refuses a network that gives tenants IPv6. Our ACL, `deny-egress`
    /// and the bastion's address list are IPv4, and Incus's last ACL rule
    /// allows both families: over IPv6 a tenant would reach the bastion's
    /// services and its neighbours through the gateway. With
    /// `ipv6.address=none` Incus also disables IPv6 on the bridge itself,
    /// link-local included.
    pub fn require_ipv4_only(&self) -> Result<()> {
        if self.ipv6 {
            let name = &self.name;
            bail!(Refused(format!(
                "{}: run `{}`",
                ipv6_problem(name),
                ipv6_fix(name)
            )));
        }
        Ok(())
    }

    /// The NIC settings every tenant's eth0 carries on this network (IPv4
    /// only: an IPv6 network is refused, so it never needs IPv6 filters).
    pub fn nic_security(&self) -> Vec<(&'static str, &'static str)> {
        NIC_SECURITY.to_vec()
    }
}

/// What is wrong with a tenant network that has IPv6, as one clause.
pub fn ipv6_problem(net: &str) -> String {
    format!(
        "tenant network {net} gives tenants IPv6, which containarium does not filter \
         (its ACL is IPv4 only)"
    )
}

/// The command that takes IPv6 off a tenant network.
pub fn ipv6_fix(net: &str) -> String {
    format!("incus network set {net} ipv6.address=none")
}

/// Refuses a host whose Incus has no firewall driver (`firewall` from
/// `Incus::firewall`): nothing could isolate tenants there.
pub fn require_firewall(firewall: &str) -> Result<()> {
    if firewall.is_empty() {
        bail!(Refused(
            "Incus has no firewall driver on this host (install nftables and restart incusd): \
             tenants could not be isolated"
                .into()
        ));
    }
    Ok(())
}

fn parse_network(name: &str, json: &str) -> Result<TenantNet> {
    let net: NetworkJson = serde_json::from_str(json)
        .with_context(|| format!("parsing Incus's description of network {name}"))?;
    if !net.managed || net.kind != "bridge" {
        bail!(Refused(format!(
            "tenant network {name} is not a managed Incus bridge (it is {} {:?}): \
             containarium needs one to pin and filter addresses",
            if net.managed {
                "a managed"
            } else {
                "an unmanaged"
            },
            net.kind
        )));
    }
    let gateway = net
        .config
        .get("ipv4.address")
        .and_then(|a| a.parse::<Cidr>().ok())
        .filter(|c| c.prefix <= 30)
        .ok_or_else(|| {
            Refused(format!(
                "tenant network {name} has no IPv4 subnet (ipv4.address): set one, e.g. \
                 `incus network set {name} ipv4.address=10.10.0.1/22`"
            ))
        })?;
    let ipv6 = net
        .config
        .get("ipv6.address")
        .is_some_and(|a| !a.is_empty() && a != "none");
    let acls = net
        .config
        .get("security.acls")
        .map(|a| {
            a.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let dhcp_ranges = match net.config.get("ipv4.dhcp.ranges") {
        None => None,
        Some(text) => Some(parse_ranges(text).ok_or_else(|| {
            Refused(format!(
                "tenant network {name}: ipv4.dhcp.ranges {:?} is not START-END[,START-END]",
                text.escape_debug().to_string()
            ))
        })?),
    };
    Ok(TenantNet {
        name: name.to_string(),
        gateway,
        ipv6,
        acls,
        dhcp_ranges,
    })
}

/// `ipv4.dhcp.ranges` as Incus spells it: `START-END[,START-END...]`.
fn parse_ranges(text: &str) -> Option<Vec<(Ipv4Addr, Ipv4Addr)>> {
    text.split(',')
        .map(|range| {
            let (a, b) = range.trim().split_once('-')?;
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// `incus network set NET ipv4.dhcp.ranges=START-END`.
pub fn dhcp_range_cmd(incus: &Incus, net: &TenantNet) -> Cmd {
    let (a, b) = net.dynamic_range();
    incus.cmd([
        "network".to_string(),
        "set".into(),
        net.name.clone(),
        format!("ipv4.dhcp.ranges={a}-{b}"),
    ])
}

/// The network of the default profile's eth0.
fn profile_network(incus: &Incus) -> Result<String> {
    incus
        .default_profile()?
        .devices
        .get("eth0")
        .and_then(|d| d.get("network"))
        .cloned()
        .ok_or_else(|| {
            Refused(
                "the default profile has no eth0 on a managed network: set `network` in \
                 config.toml or add one (incus profile device add default eth0 nic network=NET)"
                    .into(),
            )
            .into()
        })
}

/// The command that brings an existing tenant's eth0 to what `create` gives
/// every tenant now (the filters), for containers made before: `None` when
/// it has them. Incus applies NIC changes to a running container live.
pub fn nic_fix_cmd(incus: &Incus, instance: &Instance, net: &TenantNet) -> Option<Cmd> {
    let eth0 = instance.expanded_devices.get("eth0")?;
    let missing: Vec<String> = net
        .nic_security()
        .into_iter()
        .filter(|(key, value)| eth0.get(*key).map(String::as_str) != Some(value))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let verb = instance.device_verb("eth0");
    Some(
        incus
            .cmd(["config", "device", verb, instance.name.as_str(), "eth0"])
            .args(missing),
    )
}

/// Every IPv4 address in use on `net` by any instance of any project: each
/// pinned address, and for an instance without one what its NIC on `net`
/// holds. Never what a container of ours reports: a tenant is root in it and
/// can put every address of the subnet on a dummy interface, which would
/// leave nobody an address to be given (and keep a cluster's claim moving).
pub fn taken(net: &TenantNet, all: &[Instance]) -> BTreeSet<Ipv4Addr> {
    let mut taken = BTreeSet::new();
    for instance in all {
        for (nic, device) in &instance.expanded_devices {
            if device.get("network").map(String::as_str) != Some(net.name.as_str()) {
                continue;
            }
            if let Some(ip) = device.get("ipv4.address").and_then(|a| a.parse().ok()) {
                taken.insert(ip);
            } else if instance.recorded_owner().is_none()
                && let Some(state) = instance.state.as_ref().and_then(|s| s.network.as_ref())
                && let Some(held) = state.get(device.get("name").unwrap_or(nic))
            {
                taken.extend(
                    held.addresses
                        .iter()
                        .filter(|a| a.family == "inet")
                        .filter_map(|a| a.address.parse::<Ipv4Addr>().ok())
                        .filter(|ip| net.gateway.contains(*ip)),
                );
            }
        }
    }
    taken
}

/// The lowest free tenant address, or a refusal that says the network is
/// full.
pub fn allocate(net: &TenantNet, taken: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr> {
    net.hosts().find(|ip| !taken.contains(ip)).ok_or_else(|| {
        Refused(format!(
            "tenant network {} ({}) has no free address left: widen its subnet",
            net.name,
            net.gateway.network()
        ))
        .into()
    })
}

/// A free address for `name` to move to after it found another instance on
/// the address it chose (see `create::publish_steps`): one of the lowest
/// free addresses, picked by a hash of `name` and `attempt`, so that two
/// containers that both give way to each other part instead of meeting
/// again on the next one.
pub fn spread(
    net: &TenantNet,
    taken: &BTreeSet<Ipv4Addr>,
    name: &str,
    attempt: u32,
) -> Result<Ipv4Addr> {
    const SPREAD: usize = 16;
    let free: Vec<Ipv4Addr> = net
        .hosts()
        .filter(|ip| !taken.contains(ip))
        .take(SPREAD)
        .collect();
    if free.is_empty() {
        return allocate(net, taken);
    }
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let hash = name
        .bytes()
        .chain(attempt.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    Ok(free[(hash % free.len() as u64) as usize])
}

/// Where a cluster publishes the sshd of the container at tenant address
/// `ip`: [`PROXY_PORT_BASE`] plus the address's offset in the subnet.
/// Addresses are unique across the cluster (the members share the tenant
/// network's definition), so these ports are too, on every member; a
/// container keeps its port when it moves.
pub fn proxy_port(net: &TenantNet, ip: Ipv4Addr) -> Result<u16, Refused> {
    let offset = u32::from(ip) - u32::from(net.gateway.network().addr);
    u16::try_from(u32::from(PROXY_PORT_BASE) + offset).map_err(|_| {
        Refused(format!(
            "tenant network {} ({}) is too big to publish every address on a port \
             of its own: use a /17 or smaller on a cluster",
            net.name,
            net.gateway.network()
        ))
    })
}

/// Where each container's jump tunnels go (a key's `permitopen`, the
/// banner waited for, an export's `ProxyJump`), computed from what
/// containarium authors: the pinned address, port 22; on a cluster, the
/// address of the member the container is on and the port its address
/// gives ([`proxy_port`]), as `create` publishes it. Never read from the
/// `ssh` device: a snapshot or a backup can bring one back that listens
/// anywhere. The tenant network and the members' addresses are asked for
/// only for a container on a cluster, once each.
pub struct Endpoints<'a> {
    incus: &'a Incus,
    probe_net: Box<dyn Fn() -> Result<TenantNet> + 'a>,
    net: OnceCell<TenantNet>,
    members: RefCell<BTreeMap<String, Ipv4Addr>>,
}

impl<'a> Endpoints<'a> {
    /// `probe_net` gives the tenant network when a container on a cluster
    /// needs it.
    pub fn new(incus: &'a Incus, probe_net: impl Fn() -> Result<TenantNet> + 'a) -> Endpoints<'a> {
        Endpoints {
            incus,
            probe_net: Box::new(probe_net),
            net: OnceCell::new(),
            members: RefCell::default(),
        }
    }

    /// Where `instance`'s tunnels go, whatever its `ssh` device says.
    pub fn computed(&self, instance: &Instance) -> Result<SocketAddrV4> {
        let name = &instance.name;
        let ip = instance.pinned_ipv4().ok_or_else(|| {
            Refused(format!(
                "{name} has no pinned address (never finished creating?)"
            ))
        })?;
        let Some(member) = instance.member() else {
            return Ok(SocketAddrV4::new(ip, 22));
        };
        let net = match self.net.get() {
            Some(net) => net,
            None => {
                let net = (self.probe_net)()?;
                self.net.get_or_init(|| net)
            }
        };
        let port = proxy_port(net, ip)?;
        let known = self.members.borrow().get(member).copied();
        let at = match known {
            Some(at) => at,
            None => {
                let at = self.incus.member_address(member)?;
                self.members.borrow_mut().insert(member.to_string(), at);
                at
            }
        };
        Ok(SocketAddrV4::new(at, port))
    }

    /// [`Endpoints::computed`], refused (one line) when the instance's `ssh`
    /// device is not exactly what containarium publishes there.
    pub fn of(&self, instance: &Instance) -> Result<SocketAddrV4> {
        let at = self.computed(instance)?;
        match proxy_problem(instance, at) {
            Some(why) => Err(Refused(format!(
                "{why}; nothing changed (see `containarium host doctor`)"
            ))
            .into()),
            None => Ok(at),
        }
    }
}

/// The `ssh` device containarium publishes `ip`:22 with at `at` on a
/// cluster member ([`Incus::proxy_add_cmd`]'s).
pub fn proxy_device(at: SocketAddrV4, ip: Ipv4Addr) -> BTreeMap<String, String> {
    [
        ("type", "proxy".to_string()),
        ("listen", format!("tcp:{at}")),
        ("connect", format!("tcp:{ip}:22")),
        ("nat", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What is wrong with `instance`'s `ssh` device, given where its tunnels
/// go (`at`, from [`Endpoints::computed`]): off a cluster it has none; on
/// one it is exactly [`proxy_device`].
pub fn proxy_problem(instance: &Instance, at: SocketAddrV4) -> Option<String> {
    let name = &instance.name;
    let device = instance.expanded_devices.get(PROXY_DEVICE);
    let shown = |d: &BTreeMap<String, String>| {
        let pairs: Vec<String> = d
            .iter()
            .map(|(k, v)| format!("{k}={}", v.escape_debug()))
            .collect();
        pairs.join(" ")
    };
    match (device, instance.member()) {
        (None, None) => None,
        (Some(device), None) => Some(format!(
            "{name} has an `{PROXY_DEVICE}` device ({}), which containarium never adds off a cluster",
            shown(device)
        )),
        (None, Some(member)) => Some(format!(
            "{name} has no `{PROXY_DEVICE}` device: its sshd is not published on {member} at {at}"
        )),
        (Some(device), Some(_)) => {
            // `at` was computed from the pinned address.
            let want = proxy_device(at, instance.pinned_ipv4()?);
            (device != &want).then(|| {
                format!(
                    "{name}'s `{PROXY_DEVICE}` device ({}) is not the one containarium publishes ({})",
                    shown(device),
                    shown(&want)
                )
            })
        }
    }
}

/// The first port [`proxy_port`] hands out.
pub const PROXY_PORT_BASE: u16 = 10000;

/// The addresses tenants must not reach: the host's own (every interface),
/// or on a cluster every member's cluster address, where the members'
/// services and every container's published sshd listen. The network ACL
/// is cluster-wide, so on a cluster this list is the same from any member.
pub fn guarded_addresses(incus: &Incus, server: &crate::incus::Server) -> Result<Vec<Ipv4Addr>> {
    if !server.clustered {
        return Ok(host_addresses());
    }
    let mut out = incus
        .members()?
        .iter()
        .map(crate::incus::Member::address)
        .collect::<Result<Vec<_>>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every instance of every project, for [`taken`].
pub fn all_instances(incus: &Incus) -> Result<Vec<Instance>> {
    incus.listed(&Incus::default().cmd(["list", "--all-projects", "--format", "json"]))
}

/// One rule of an Incus network ACL, as its API spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub state: String,
}

/// The parts of an ACL we own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRules {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub egress: Vec<Rule>,
    #[serde(default)]
    pub ingress: Vec<Rule>,
}

fn rule(action: &str, destination: &str, description: &str) -> Rule {
    Rule {
        action: action.into(),
        destination: destination.into(),
        description: description.into(),
        state: "enabled".into(),
    }
}

/// Our ACL for `net`: what tenants may not reach, everything else allowed
/// (Internet egress keeps working where the network has NAT). Rejects
/// always win over allows in Incus, whatever the order.
pub fn acl_rules(net: &TenantNet, host_addresses: &[Ipv4Addr], deny_egress: &[Cidr]) -> AclRules {
    let mut egress = vec![
        rule(
            "reject",
            "169.254.0.0/16",
            "link-local, including cloud metadata servers",
        ),
        rule(
            "reject",
            &net.gateway.network().to_string(),
            "other tenants and the bastion's gateway address (DHCP and DNS stay open)",
        ),
    ];
    let own: Vec<String> = host_addresses
        .iter()
        .filter(|ip| !net.gateway.contains(**ip) && !ip.is_loopback())
        .map(ToString::to_string)
        .collect();
    if !own.is_empty() {
        egress.push(rule(
            "reject",
            &own.join(","),
            "the bastion's own addresses",
        ));
    }
    if !deny_egress.is_empty() {
        let list: Vec<String> = deny_egress.iter().map(ToString::to_string).collect();
        egress.push(rule("reject", &list.join(","), "deny-egress (config.toml)"));
    }
    egress.push(rule("allow", "", "everything else"));
    AclRules {
        description: "containarium: what tenant containers may not reach".into(),
        egress,
        ingress: vec![rule(
            "allow",
            "",
            "the bastion's forwards and replies to tenants",
        )],
    }
}

/// The ACL as Incus holds it now, `None` when there is none.
pub fn current_acl(incus: &Incus) -> Result<Option<AclRules>> {
    match crate::exec::run(&incus.query_cmd(&format!("/1.0/network-acls/{ACL}"))) {
        Ok(out) => Ok(Some(
            serde_json::from_str(&out.stdout).context("parsing the tenant network ACL")?,
        )),
        Err(err) if err.stderr_contains("not found") => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// `incus network acl create|edit` with the rules as JSON (which is YAML)
/// on standard input.
pub fn write_acl_cmd(incus: &Incus, verb: &str, rules: &AclRules) -> Cmd {
    let json = serde_json::to_string_pretty(rules).expect("ACL rules serialise");
    incus.cmd(["network", "acl", verb, ACL]).stdin(json)
}

/// Attaches our ACL to `net`, keeping any ACL the admin attached.
pub fn attach_acl_cmd(incus: &Incus, net: &TenantNet) -> Cmd {
    let mut acls = net.acls.clone();
    acls.push(ACL.to_string());
    incus.cmd([
        "network".to_string(),
        "set".to_string(),
        net.name.clone(),
        format!("security.acls={}", acls.join(",")),
    ])
}

/// The host's own IPv4 addresses (every interface), which tenants must not
/// reach: the bastion's services listen on them.
pub fn host_addresses() -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Incus 6.0.4: `incus query /1.0/networks/NAME`.
    const NETWORK: &str = include_str!("../tests/fixtures/incus-network-guarded.json");

    /// The captured network as `host init` leaves it: a DHCP range at the
    /// top of the subnet.
    fn net() -> TenantNet {
        let mut net = parse_network("ctme2ebr0", NETWORK).unwrap();
        net.dhcp_ranges = Some(vec![net.dynamic_range()]);
        net
    }

    /// An instance at 10.0.0.5 with `ssh` device `ssh` (none: `null`), on
    /// `location` ("none" off a cluster).
    fn published(location: &str, ssh: serde_json::Value) -> Instance {
        let mut devices = serde_json::json!({
            "eth0": {"type": "nic", "network": "br", "ipv4.address": "10.0.0.5"}});
        if !ssh.is_null() {
            devices["ssh"] = ssh;
        }
        let json = serde_json::json!([{"name": "a-container", "status": "Stopped",
            "location": location, "devices": devices, "expanded_devices": devices}]);
        crate::incus::parse_instances(&json.to_string())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_the_ssh_device_containarium_publishes_passes() {
        let at: SocketAddrV4 = "192.0.2.1:10005".parse().unwrap();
        let ours = serde_json::json!({"type": "proxy", "listen": "tcp:192.0.2.1:10005",
                                      "connect": "tcp:10.0.0.5:22", "nat": "true"});
        assert_eq!(proxy_problem(&published("m1", ours.clone()), at), None);
        let pinned: SocketAddrV4 = "10.0.0.5:22".parse().unwrap();
        assert_eq!(
            proxy_problem(&published("none", serde_json::Value::Null), pinned),
            None
        );
        // Off a cluster, any device is one containarium never adds.
        let off = proxy_problem(&published("none", ours.clone()), pinned).unwrap();
        assert!(off.contains("never adds off a cluster"), "{off}");
        // On one: another listen, connect, no NAT, an extra key, or none.
        for (key, value) in [
            ("listen", "tcp:169.254.169.254:80"),
            ("connect", "tcp:10.0.0.6:22"),
            ("nat", "false"),
            ("bind", "instance"),
        ] {
            let mut device = ours.clone();
            device[key] = value.into();
            let why = proxy_problem(&published("m1", device), at).unwrap();
            assert!(
                why.contains("is not the one containarium publishes"),
                "{why}"
            );
        }
        let none = proxy_problem(&published("m1", serde_json::Value::Null), at).unwrap();
        assert!(
            none.contains("not published on m1 at 192.0.2.1:10005"),
            "{none}"
        );
        // The endpoint itself never comes from the device: off a cluster
        // it is the pinned address, whatever the device says.
        let incus = Incus::default();
        let endpoints = Endpoints::new(&incus, || bail!("not on a cluster"));
        let hostile = serde_json::json!({"type": "proxy", "listen": "tcp:169.254.169.254:80",
                                         "connect": "tcp:10.0.0.5:22"});
        let instance = published("none", hostile);
        assert_eq!(endpoints.computed(&instance).unwrap(), pinned);
        let refused = endpoints.of(&instance).unwrap_err().to_string();
        assert!(refused.contains("nothing changed"), "{refused}");
    }

    #[test]
    fn parses_a_real_network() {
        let net = parse_network("ctme2ebr0", NETWORK).unwrap();
        assert_eq!(net.gateway.to_string(), "10.197.83.1/24");
        assert!(!net.ipv6);
        assert!(net.is_guarded());
        // Captured before `host init` gave it a DHCP range: every address
        // is leasable by anyone, so none is pinned.
        assert_eq!(net.dhcp_ranges, None);
        assert_eq!(net.hosts().count(), 0);
        assert!(
            net.require_guarded("nftables")
                .unwrap_err()
                .to_string()
                .contains("run `containarium host init`")
        );
    }

    /// Pinned addresses are never ones dnsmasq would lease to a stranger:
    /// `host init` leaves DHCP the top of the subnet, allocation the rest.
    #[test]
    fn pinned_addresses_stay_out_of_the_dhcp_range() {
        let mut net = parse_network("ctme2ebr0", NETWORK).unwrap();
        assert!(net.leasable(Ipv4Addr::new(10, 197, 83, 2)));
        assert_eq!(
            net.dynamic_range(),
            (
                Ipv4Addr::new(10, 197, 83, 247),
                Ipv4Addr::new(10, 197, 83, 254)
            )
        );
        assert_eq!(
            dhcp_range_cmd(&Incus::new(None), &net).to_string(),
            "incus network set ctme2ebr0 ipv4.dhcp.ranges=10.197.83.247-10.197.83.254"
        );
        net.dhcp_ranges = parse_ranges("10.197.83.247-10.197.83.254, 10.197.83.100-10.197.83.100");
        assert_eq!(net.hosts().next(), Some(Ipv4Addr::new(10, 197, 83, 2)));
        assert_eq!(net.hosts().count(), 253 - 9);
        assert_eq!(net.hosts().last(), Some(Ipv4Addr::new(10, 197, 83, 246)));
        assert!(!net.hosts().any(|ip| ip == Ipv4Addr::new(10, 197, 83, 100)));
        assert!(parse_ranges("10.0.0.9-10.0.0.2").is_none());
        assert!(parse_ranges("x").is_none());
        // A small subnet keeps one address for DHCP.
        let small = r#"{"managed":true,"type":"bridge","config":{"ipv4.address":"10.0.0.1/29"}}"#;
        let small = parse_network("s", small).unwrap();
        assert_eq!(
            small.dynamic_range(),
            (Ipv4Addr::new(10, 0, 0, 6), Ipv4Addr::new(10, 0, 0, 6))
        );
    }

    #[test]
    fn refuses_what_cannot_be_filtered() {
        let unmanaged = r#"{"managed":false,"type":"physical","config":{}}"#;
        let err = parse_network("eth0", unmanaged).unwrap_err();
        assert!(
            err.to_string().contains("not a managed Incus bridge"),
            "{err}"
        );
        let no_v4 = r#"{"managed":true,"type":"bridge","config":{"ipv4.address":"none"}}"#;
        assert!(
            parse_network("br", no_v4)
                .unwrap_err()
                .to_string()
                .contains("no IPv4 subnet")
        );
        let bare = r#"{"managed":true,"type":"bridge","config":{"ipv4.address":"10.0.0.1/24"}}"#;
        let err = parse_network("br", bare)
            .unwrap()
            .require_guarded("nftables")
            .unwrap_err();
        assert!(
            err.to_string().contains("run `containarium host init`"),
            "{err}"
        );
        let err = net().require_guarded("").unwrap_err();
        assert!(err.to_string().contains("no firewall driver"), "{err}");
        net().require_guarded("nftables").unwrap();
    }

    /// Any IPv6 address on the bridge is refused, guarded or not, whatever
    /// the kernel can filter, with one line naming Incus's fix; `none` or no
    /// key at all is IPv4 only. The refusal comes before the ACL's: host
    /// init, which attaches the ACL, refuses the same network.
    #[test]
    fn ipv6_on_the_tenant_network_is_refused() {
        let with = |v6: Option<&str>, acls: &str| {
            let mut config = serde_json::json!({
                "ipv4.address": "10.0.0.1/24",
                "ipv4.dhcp.ranges": "10.0.0.250-10.0.0.254",
                "security.acls": acls,
            });
            if let Some(v6) = v6 {
                config["ipv6.address"] = v6.into();
            }
            let json = serde_json::json!({"managed": true, "type": "bridge", "config": config});
            parse_network("br", &json.to_string()).unwrap()
        };
        for v6 in [None, Some("none"), Some("")] {
            let net = with(v6, ACL);
            assert!(!net.ipv6, "{v6:?}");
            net.require_ipv4_only().unwrap();
            net.require_guarded("nftables").unwrap();
            assert_eq!(net.nic_security(), NIC_SECURITY.to_vec());
        }
        for v6 in ["fd42:1:2:3::1/64", "auto"] {
            let expected = "tenant network br gives tenants IPv6, which containarium does not \
                            filter (its ACL is IPv4 only): run `incus network set br ipv6.address=none`";
            for acls in [ACL, ""] {
                let net = with(Some(v6), acls);
                assert!(net.ipv6, "{v6}");
                let err = net.require_guarded("nftables").unwrap_err();
                assert_eq!(err.to_string(), expected);
                assert!(err.downcast_ref::<Refused>().is_some());
                assert_eq!(net.require_ipv4_only().unwrap_err().to_string(), expected);
            }
            // The ACL's own check does not look at IPv6 (doctor's
            // tenant-ipv6 does), nor do the NIC filters ask for IPv6 ones.
            with(Some(v6), ACL).require_acl("nftables").unwrap();
            assert_eq!(with(Some(v6), ACL).nic_security(), NIC_SECURITY.to_vec());
        }
    }

    #[test]
    fn what_a_tenant_reports_takes_no_address() {
        // alice (ours) put the whole subnet on a dummy interface; "web" (not
        // ours, no pinned address) holds .7 on its eth0 and .8 on another.
        let nic = |pin: &str| {
            format!(
                r#"{{"eth0":{{"type":"nic","network":"ctme2ebr0"{pin}}},"root":{{"type":"disk","path":"/"}}}}"#
            )
        };
        let held = |ips: &[&str]| {
            let list: Vec<String> = ips
                .iter()
                .map(|ip| {
                    format!(
                        r#"{{"family":"inet","address":"{ip}","netmask":"24","scope":"global"}}"#
                    )
                })
                .collect();
            format!(r#"{{"addresses":[{}]}}"#, list.join(","))
        };
        let squat: Vec<String> = (2..=254).map(|i| format!("10.197.83.{i}")).collect();
        let squat: Vec<&str> = squat.iter().map(String::as_str).collect();
        let json = format!(
            r#"[{{"name":"alice-container","status":"Running","config":{{"user.containarium.owner":"alice"}},
                 "expanded_devices":{},"state":{{"network":{{"eth0":{},"dummy0":{}}}}}}},
                {{"name":"web","status":"Running","config":{{}},
                 "expanded_devices":{},"state":{{"network":{{"eth0":{},"dummy0":{}}}}}}}]"#,
            nic(r#","ipv4.address":"10.197.83.5""#),
            held(&["10.197.83.5"]),
            held(&squat),
            nic(""),
            held(&["10.197.83.7"]),
            held(&["10.197.83.8"]),
        );
        let all = crate::incus::parse_instances(&json).unwrap();
        let taken = taken(&net(), &all);
        assert_eq!(
            taken,
            BTreeSet::from([Ipv4Addr::new(10, 197, 83, 5), Ipv4Addr::new(10, 197, 83, 7)])
        );
        assert_eq!(
            allocate(&net(), &taken).unwrap(),
            Ipv4Addr::new(10, 197, 83, 2)
        );
    }

    #[test]
    fn allocates_the_lowest_free_address_and_says_when_full() {
        let net = net();
        let all = crate::incus::parse_instances(include_str!("../tests/fixtures/incus-list.json"))
            .unwrap();
        let taken = taken(&net, &all);
        assert!(taken.contains(&Ipv4Addr::new(10, 197, 83, 48)), "{taken:?}");
        let ip = allocate(&net, &taken).unwrap();
        assert!(!taken.contains(&ip) && net.gateway.contains(ip) && ip != net.gateway.addr);
        let tiny = TenantNet {
            gateway: "10.9.9.1/30".parse().unwrap(),
            ..net
        };
        let one = allocate(&tiny, &BTreeSet::new()).unwrap();
        assert_eq!(one, Ipv4Addr::new(10, 9, 9, 2));
        let err = allocate(&tiny, &BTreeSet::from([one])).unwrap_err();
        assert!(err.to_string().contains("no free address left"), "{err}");
    }

    #[test]
    fn two_that_give_way_part_on_free_addresses() {
        let net = net();
        let taken: BTreeSet<Ipv4Addr> = net.hosts().take(5).collect();
        let a = spread(&net, &taken, "e2e-ra1-container", 0).unwrap();
        let b = spread(&net, &taken, "e2e-rb1-container", 0).unwrap();
        for ip in [a, b] {
            assert!(!taken.contains(&ip) && net.gateway.contains(ip), "{ip}");
        }
        assert_ne!(a, b, "the same pick for two names");
        assert_eq!(a, spread(&net, &taken, "e2e-ra1-container", 0).unwrap());
        // A later attempt picks again; over a few, more than one address.
        let picks: BTreeSet<Ipv4Addr> = (0..8)
            .map(|n| spread(&net, &taken, "e2e-ra1-container", n).unwrap())
            .collect();
        assert!(picks.len() > 1, "{picks:?}");
        let tiny = TenantNet {
            gateway: "10.9.9.1/30".parse().unwrap(),
            ..net
        };
        let err = spread(&tiny, &BTreeSet::from([Ipv4Addr::new(10, 9, 9, 2)]), "x", 0).unwrap_err();
        assert!(err.to_string().contains("no free address left"), "{err}");
    }

    #[test]
    fn acl_refuses_link_local_the_subnet_the_host_and_deny_egress() {
        let rules = acl_rules(
            &net(),
            &[
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(10, 197, 83, 1),
                Ipv4Addr::new(192, 0, 2, 10),
            ],
            &["10.128.0.0/9".parse().unwrap()],
        );
        let rejected: Vec<&str> = rules
            .egress
            .iter()
            .filter(|r| r.action == "reject")
            .map(|r| r.destination.as_str())
            .collect();
        assert_eq!(
            rejected,
            [
                "169.254.0.0/16",
                "10.197.83.0/24",
                "192.0.2.10",
                "10.128.0.0/9"
            ]
        );
        assert_eq!(rules.egress.last().unwrap().action, "allow");
        assert_eq!(rules.ingress.len(), 1);
    }

    #[test]
    fn older_tenants_get_the_filters_they_lack() {
        let all = crate::incus::parse_instances(include_str!("../tests/fixtures/incus-list.json"))
            .unwrap();
        let alice = all
            .iter()
            .find(|i| i.name == "ctme2e-alice-container")
            .unwrap();
        let cmd = nic_fix_cmd(&Incus::default(), alice, &net()).unwrap();
        assert_eq!(
            cmd.to_string(),
            "incus config device set ctme2e-alice-container eth0 security.port_isolation=true \
             security.mac_filtering=true security.ipv4_filtering=true"
        );
        let mut filtered = alice.clone();
        let eth0 = filtered.expanded_devices.get_mut("eth0").unwrap();
        for (key, value) in NIC_SECURITY {
            eth0.insert(key.into(), value.into());
        }
        assert!(nic_fix_cmd(&Incus::default(), &filtered, &net()).is_none());
    }

    #[test]
    fn the_acl_fixture_is_what_incus_returns() {
        let acl: AclRules =
            serde_json::from_str(include_str!("../tests/fixtures/incus-network-acl.json")).unwrap();
        assert_eq!(acl.egress[0].destination, "169.254.0.0/16");
        assert_eq!(acl.ingress[0].action, "allow");
    }

    #[test]
    fn cidrs_parse_strictly() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().prefix, 8);
        assert_eq!("192.0.2.7".parse::<Cidr>().unwrap().prefix, 32);
        for bad in ["10.0.0.0/33", "10.0.0/8", "fd00::/8", "x", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let c: Cidr = "10.197.83.1/24".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(10, 197, 83, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 197, 84, 1)));
    }
}
