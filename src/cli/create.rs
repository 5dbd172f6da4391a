//! `containarium create USER`: the container, then the jump account.
//!
//! The plan probes first (name free, image present, host account free or
//! ours, host prepared, tenant network guarded) and only then changes
//! anything. Under our lock it chooses a free address and creates the
//! container with that address pinned and its NIC filtered, so filtering is
//! in force from the first boot; then the jump account and its key file.
//! The lock is released before the container boots: other runs need not
//! wait for cloud-init. The container is created with
//! `user.containarium.state=pending` and marked `ready` last, after the
//! user, the keys and sshd were checked from inside and outside.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{Env, print_json};
use crate::accounts;
use crate::cloud_init::{self, Template};
use crate::cohort::Expiry;
use crate::config::Defaults;
use crate::error::Refused;
use crate::exec::Cmd;
use crate::files::{self, FileWrite};
use crate::incus::{Incus, key};
use crate::keys::{self, PublicKey};
use crate::names::UserName;
use crate::network::{self, TenantNet};
use crate::plan::{Action, Facts, Plan, Step};
use crate::size::ByteSize;
use crate::time::{Span, Time};

pub(super) const SSHD_TIMEOUT: Duration = Duration::from_secs(60);

/// Create a user's container and jump account
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// User name (2-31 chars: a-z, 0-9, '-'; starts with a letter)
    user: UserName,

    /// Public key file for the user (repeatable)
    #[arg(long = "ssh-key", value_name = "FILE", required = true)]
    ssh_keys: Vec<PathBuf>,

    /// Image to start from [default: config, else images:ubuntu/24.04/cloud]
    #[arg(long)]
    image: Option<String>,

    #[command(flatten)]
    limits: super::LimitArgs,

    /// Do not set up Docker in the container
    #[arg(long)]
    no_docker: bool,

    /// Do not start the container when the host boots
    #[arg(long)]
    no_autostart: bool,

    /// On a cluster: the member (or @GROUP of members) to put it on
    /// [default: Incus's scheduler picks]
    #[arg(long, value_name = "MEMBER|@GROUP", value_parser = parse_target)]
    target: Option<String>,

    /// cloud-init template [default: config, else default]
    #[arg(long, value_name = "NAME")]
    template: Option<String>,

    /// When the container ends: a date (2026-12-31, UTC), an RFC 3339
    /// time, or a duration from now (30d); `reap` stops it then
    #[arg(long, value_name = "DATE|DURATION", value_parser = Expiry::parse)]
    expires: Option<Expiry>,

    /// Stop the container after this long without an SSH connection
    /// (`reap` does), e.g. 2h
    #[arg(long, value_name = "DURATION")]
    idle_stop: Option<Span>,

    /// Print the plan, with the rendered user-data, and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the result as JSON
    #[arg(long, conflicts_with = "dry_run")]
    json: bool,
}

/// Everything `create` will make, resolved from flags, config and files
/// (or from a cohort file, by `apply`).
pub(super) struct Spec {
    pub user: UserName,
    pub container: String,
    pub keys: Vec<PublicKey>,
    pub image: String,
    pub storage_pool: Option<String>,
    pub network: Option<String>,
    pub disk: ByteSize,
    pub cpu: u32,
    pub memory: ByteSize,
    pub processes: u32,
    pub docker: bool,
    pub autostart: bool,
    pub template: Template,
    pub expires: Option<Expiry>,
    pub idle_stop: Option<Span>,
    /// `apply`'s set, recorded as [`key::SET`].
    pub set: Option<String>,
    /// The cluster member or `@group` (`--target`).
    pub target: Option<String>,
}

/// A cluster member's name or `@group`, as Incus allows them.
fn parse_target(text: &str) -> Result<String, String> {
    let name = text.strip_prefix('@').unwrap_or(text);
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{:?} is not a cluster member or @group name",
            text.escape_debug().to_string()
        ))
    }
}

impl CreateArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let json = self.json;
        let dry_run = self.dry_run;
        let spec = self.into_spec(env)?;
        let start = Instant::now();
        if let Some(facts) = create(env, &spec, dry_run)? {
            report(&spec, &facts, start.elapsed(), json);
        }
        Ok(())
    }

    fn into_spec(self, env: &Env) -> Result<Spec> {
        let defaults = Defaults::load(&env.paths)?;
        let keys = keys::read_key_files(&self.ssh_keys)?;
        let template_name = self.template.unwrap_or(defaults.template);
        let template = Template::load(&env.paths.templates_dir(), &template_name)?;
        Ok(Spec {
            container: self.user.container(),
            user: self.user,
            keys,
            image: self.image.unwrap_or(defaults.image),
            storage_pool: defaults.storage_pool,
            network: defaults.network,
            disk: self.limits.disk.unwrap_or(defaults.disk),
            cpu: self.limits.cpu.unwrap_or(defaults.cpu),
            memory: self.limits.memory.unwrap_or(defaults.memory),
            processes: self.limits.processes.unwrap_or(defaults.processes),
            docker: !self.no_docker,
            autostart: !self.no_autostart,
            template,
            expires: self.expires,
            idle_stop: self.idle_stop,
            set: None,
            target: self.target,
        })
    }
}

/// Plans and applies `spec` (or prints the plan: `None` then); returns what
/// was learned, the address.
pub(super) fn create(env: &Env, spec: &Spec, dry_run: bool) -> Result<Option<Facts>> {
    // Ours is held from the probes on: the address chosen must still be
    // free when `incus init` records it. The user's, to the end.
    let (_user_lock, lock) = super::lock_user(env, &spec.user, &format!("create {}", spec.user))?;
    let (plan, mut facts) = plan(env, spec)?;
    if dry_run {
        crate::out!("{}", plan.describe());
        return Ok(None);
    }
    plan.apply_holding(lock, &mut facts)?;
    Ok(Some(facts))
}

/// The plan, and what is known before it runs: the address it gives the
/// container (and off a cluster, its endpoint).
fn plan(env: &Env, spec: &Spec) -> Result<(Plan, Facts)> {
    let incus = &env.incus;
    let user = &spec.user;
    let now = Time::now();
    if let Some(ends) = spec.expires.as_ref().map(|e| e.at(now))
        && ends <= now
    {
        bail!(Refused(format!(
            "{user} would expire at {ends}, which has passed; nothing changed"
        )));
    }
    let mut plan = super::host::plan(&env.paths, false)?.kept_on_failure();
    let leftover = match incus.instance(&spec.container)? {
        None => None,
        // Under the user's lock, a pending container is what a run that
        // died half-way left: it never became ready, so nobody had it yet.
        Some(existing) if existing.owner() == Some(user.as_str()) && is_pending(&existing) => {
            plan.push(Step::new(
                format!(
                    "delete {}, left pending by an interrupted create or restore",
                    spec.container
                ),
                incus.delete_action(&spec.container),
            ));
            Some(existing.name)
        }
        Some(existing) => match existing.owner() {
            Some(_) => bail!(Refused(format!(
                "{user} already exists (container {}); nothing changed",
                spec.container
            ))),
            None => bail!(Refused(format!(
                "an instance named {} already exists and is not managed by containarium",
                spec.container
            ))),
        },
    };
    let adopt_account = match accounts::lookup(user.as_str())? {
        None => false,
        Some(account) if accounts::is_ours(&account)? => true,
        Some(_) => bail!(Refused(format!(
            "host account {user} exists and was not made by containarium; choose another name"
        ))),
    };
    incus.require_image(&spec.image)?;
    let mut all = network::all_instances(incus)?;
    super::refuse_claimed_elsewhere(env, user, &all)?;
    // The leftover's address is free again once it is gone.
    let here = incus.project().unwrap_or("default");
    all.retain(|i| !(Some(&i.name) == leftover.as_ref() && i.project == here));
    let net = TenantNet::probe(incus, spec.network.as_deref())?;
    let server = incus.server()?;
    net.require_guarded(&server.firewall)?;
    if spec.target.is_some() && !server.clustered {
        bail!(Refused(
            "--target needs an Incus cluster, and this Incus is not one; nothing changed".into()
        ));
    }
    let ip = network::allocate(&net, &network::taken(&net, &all))?;
    if server.clustered {
        // Refused now rather than once the container exists.
        network::proxy_port(&net, ip)?;
    }

    let container = spec.container.clone();
    // Whatever a failed or interrupted `incus init` left is ours: the name
    // was free when we probed, under our lock.
    plan.push(
        Step::new(
            format!("create container {container} at {ip}"),
            Action::run(init_cmd(incus, spec, &net, ip).uninterruptible()),
        )
        .undo(incus.delete_action(&container))
        .undo_if_failed(),
    );
    // Off a cluster the bastion reaches the container directly; on one,
    // through its member (see `incus::PROXY_DEVICE`).
    if server.clustered {
        plan.append(publish_steps(incus, &container, &net));
    }
    if adopt_account {
        plan.unchanged(format!(
            "jump account {user} (made by containarium earlier)"
        ));
    } else {
        plan.push(
            Step::new(
                format!("create jump account {user}"),
                Action::EditAccounts(accounts::useradd(user)),
            )
            .undo(Action::EditAccounts(accounts::userdel(user))),
        );
    }
    // `sshd -T` needs the account; on a fresh host this is the first one.
    // Before the key file: no key opens an account the policy misses.
    plan.push(super::host::policy_step(&env.paths, user));
    plan.push(jump_keys_step(&env.paths, user, spec.keys.clone())?.releases_lock());
    plan.push(Step::new(
        format!("start {container}"),
        Action::run(incus.cmd(["start", container.as_str()])),
    ));

    let waiter = incus.clone();
    let name = container.clone();
    // Only stages that start after this count: an image may carry an old
    // status.json.
    let since = since_epoch().as_secs_f64();
    plan.push(Step::new(
        "wait for cloud-init",
        Action::check(
            format!(
                "{}; then read {} for errors",
                incus.exec_cmd(&name, cloud_init::wait_argv()),
                cloud_init::STATUS_FILE,
            ),
            move |_| cloud_init::wait(&waiter, &name, since),
        ),
    ));
    let checker = incus.clone();
    let name = container.clone();
    let owner = user.clone();
    let wanted = spec.keys.clone();
    plan.push(Step::new(
        "verify the user, their keys and sshd",
        Action::check(
            format!("check {user} and ~{user}/.ssh/authorized_keys in {name}; read sshd's banner on <endpoint>"),
            move |facts| verify(&checker, &name, &owner, &wanted, facts),
        ),
    ));
    plan.push(Step::new(
        "mark the container ready",
        Action::run(incus.config_set_cmd(&container, key::STATE, "ready")),
    ));
    let endpoint = (!server.clustered).then(|| SocketAddrV4::new(ip, 22));
    Ok((
        plan,
        Facts {
            ipv4: Some(ip),
            endpoint,
        },
    ))
}

/// On a cluster: make sure no other instance holds `container`'s address,
/// learn which member it landed on and publish its sshd there, on the port
/// its address gives (`network::proxy_port`). The member is Incus's choice
/// unless `--target`; the address is in `Facts` by then (`restore` learns it
/// mid-plan).
pub(super) fn publish_steps(incus: &Incus, container: &str, net: &TenantNet) -> Plan {
    let mut plan = Plan::default();
    plan.push(claim_step(incus, container, net));
    let (finder, name, net) = (incus.clone(), container.to_string(), net.clone());
    plan.push(Step::new(
        format!("find {container}'s cluster member"),
        Action::check(
            format!(
                "{}; then the member's address from `incus query /1.0/cluster/members/MEMBER`",
                incus.list_cmd(Some(container))
            ),
            move |facts| {
                let ip = facts.ipv4.context("no address chosen for the container")?;
                let member = finder
                    .instance(&name)?
                    .and_then(|i| i.member().map(str::to_string))
                    .with_context(|| format!("{name} is on no cluster member"))?;
                let at = finder.member_address(&member)?;
                facts.endpoint = Some(SocketAddrV4::new(at, network::proxy_port(&net, ip)?));
                Ok(())
            },
        ),
    ));
    let (publisher, name) = (incus.clone(), container.to_string());
    plan.push(
        Step::new(
            format!("publish {container}'s sshd on its member"),
            Action::Run(Box::new(move |facts| {
                publisher.proxy_add_cmd(&name, facts.endpoint_text(), facts.ipv4_text())
            })),
        )
        .undo(Action::run(incus.proxy_remove_cmd(container))),
    );
    plan
}

/// How often [`claim_step`] moves to another address before it gives up.
const CLAIM_ATTEMPTS: u32 = 8;

/// Makes `container`'s address its own across the cluster. Each bastion
/// chooses under its own lock, so two creates (or restores) through two
/// bastions at once can choose the same address, and Incus takes both: each
/// member has a bridge of its own. So once the address is written, whoever
/// then finds another instance on it gives way: it moves to another free
/// address (`network::spread`) and looks again. The first to write never
/// sees the second; two that see each other both move, and part.
fn claim_step(incus: &Incus, container: &str, net: &TenantNet) -> Step {
    let (incus, name, net) = (incus.clone(), container.to_string(), net.clone());
    Step::new(
        format!("make sure no other instance took {container}'s address"),
        Action::check(
            format!(
                "{}; another instance on it: move to a free one (`incus config device set \
                 {container} eth0 ipv4.address=...`) and look again",
                Incus::default().cmd(["list", "--all-projects", "--format", "json"])
            ),
            move |facts| {
                // Ours is known by its UUID: the project `incus` works in
                // need not be one we were told.
                let me = incus
                    .instance(&name)?
                    .with_context(|| format!("{name} is gone"))?;
                let uuid = me.config_value("volatile.uuid").map(str::to_string);
                let here = incus.project().unwrap_or("default");
                let is_me = |i: &crate::incus::Instance| match &uuid {
                    Some(uuid) => i.config_value("volatile.uuid") == Some(uuid.as_str()),
                    None => i.name == name && i.project == here,
                };
                for attempt in 0..CLAIM_ATTEMPTS {
                    let ip = facts.ipv4.context("no address chosen for the container")?;
                    let mut others = network::all_instances(&incus)?;
                    others.retain(|i| !is_me(i));
                    let mut taken = network::taken(&net, &others);
                    if !taken.contains(&ip) {
                        return Ok(());
                    }
                    taken.insert(ip);
                    let next = network::spread(&net, &taken, &name, attempt)?;
                    crate::ui::note(&format!(
                        "{ip} was chosen for another instance at the same moment \
                         (through another bastion); {name} takes {next}"
                    ));
                    crate::exec::run(&incus.cmd([
                        "config".to_string(),
                        "device".into(),
                        "set".into(),
                        name.clone(),
                        "eth0".into(),
                        format!("ipv4.address={next}"),
                    ]))?;
                    facts.ipv4 = Some(next);
                }
                bail!(
                    "{name} found another instance on every address it took ({CLAIM_ATTEMPTS} tries)"
                )
            },
        ),
    )
}

/// Whether provisioning of `instance` has not finished (see [`key::STATE`]).
pub(super) fn is_pending(instance: &crate::incus::Instance) -> bool {
    instance.config_value(key::STATE) == Some("pending")
}

/// Waits until sshd answers at the container's endpoint (as the bastion
/// reaches it): what "started" means to a user.
pub(super) fn sshd_ready_step(to: Option<SocketAddrV4>) -> Step {
    Step::new(
        "wait for sshd",
        Action::check(
            format!(
                "read sshd's banner on {} (at most {}s)",
                to.map_or("<endpoint>".into(), |to| to.to_string()),
                SSHD_TIMEOUT.as_secs()
            ),
            move |facts| {
                let to = to
                    .or(facts.endpoint)
                    .context("no endpoint known for the container")?;
                wait_for_ssh_banner(SocketAddr::V4(to), SSHD_TIMEOUT)
            },
        ),
    )
}

/// Writes the jump key file for the address learned while applying; undone
/// by restoring what was there before.
pub(super) fn jump_keys_step(
    paths: &crate::config::Paths,
    user: &UserName,
    keys: Vec<PublicKey>,
) -> Result<Step> {
    let key_file = paths.key_file(user);
    let undo = match files::read_optional(&key_file)? {
        Some(contents) => Action::write(FileWrite {
            path: key_file.clone(),
            mode: 0o644,
            contents,
        }),
        None => Action::Remove(key_file.clone()),
    };
    Ok(Step::new(
        "write the jump account's keys",
        Action::Write(Box::new(move |facts| FileWrite {
            path: key_file.clone(),
            mode: 0o644,
            contents: accounts::jump_key_file(&facts.endpoint_text(), &keys),
        })),
    )
    .undo(undo))
}

/// `incus init` with every limit and our metadata, so the container exists
/// complete or not at all.
fn init_cmd(incus: &Incus, spec: &Spec, net: &TenantNet, ip: Ipv4Addr) -> Cmd {
    // Flags first, then `--`: the image name is the admin's text.
    let mut cmd = incus.cmd(["init"]);
    if let Some(target) = &spec.target {
        cmd = cmd.args(["--target", target]);
    }
    if let Some(pool) = &spec.storage_pool {
        cmd = cmd.args(["--storage", pool]);
    }
    if let Some(network) = &spec.network {
        cmd = cmd.args(["--network", network]);
    }
    let created = Time::now();
    let mut config = vec![
        ("limits.cpu", spec.cpu.to_string()),
        ("limits.memory", spec.memory.to_string()),
        ("limits.processes", spec.processes.to_string()),
        ("boot.autostart", spec.autostart.to_string()),
        (key::OWNER, spec.user.to_string()),
        (key::STATE, "pending".to_string()),
        (key::TEMPLATE, spec.template.name.clone()),
        (key::CREATED, created.to_string()),
        (key::JUMP_ACCOUNT, spec.user.to_string()),
        (key::DOCKER, spec.docker.to_string()),
        (key::KEYS, keys::to_lines(&spec.keys)),
        (key::IMAGE, spec.image.clone()),
    ];
    if let Some(expires) = &spec.expires {
        config.push((key::EXPIRES, expires.at(created).to_string()));
        config.push((key::EXPIRES_SET, created.to_string()));
    }
    if let Some(idle_stop) = &spec.idle_stop {
        config.push((key::IDLE_STOP, idle_stop.to_string()));
    }
    if let Some(set) = &spec.set {
        config.push((key::SET, set.clone()));
    }
    if spec.docker {
        // Docker in an unprivileged container: nesting, plus the syscalls
        // overlayfs and image unpacking need, intercepted by Incus.
        config.push(("security.nesting", "true".into()));
        config.push(("security.syscalls.intercept.mknod", "true".into()));
        config.push(("security.syscalls.intercept.setxattr", "true".into()));
    }
    config.push((
        "cloud-init.user-data",
        spec.template.render(&spec.user, &spec.keys, spec.docker),
    ));
    for (key, value) in config {
        cmd = cmd.args(["--config".to_string(), format!("{key}={value}")]);
    }
    cmd = cmd.args(["--device".to_string(), format!("root,size={}", spec.disk)]);
    // The address and the filters are in place before the first boot.
    cmd = cmd.args(["--device".to_string(), format!("eth0,ipv4.address={ip}")]);
    for (key, value) in net.nic_security() {
        cmd = cmd.args(["--device".to_string(), format!("eth0,{key}={value}")]);
    }
    cmd.args(["--", spec.image.as_str(), spec.container.as_str()])
}

/// Now, in UTC, RFC 3339.
pub(super) fn created_timestamp() -> String {
    Time::now().to_string()
}

/// Now, as time since the Unix epoch.
fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Checks what matters instead of trusting exit codes: the user exists, has
/// exactly the given keys, and sshd answers on the pinned address.
fn verify(
    incus: &Incus,
    name: &str,
    user: &UserName,
    wanted: &[PublicKey],
    facts: &mut Facts,
) -> Result<()> {
    // sshd answers only after it re-executed itself for the connection:
    // wait for that while the files are read. Through the endpoint, as the
    // jump account will.
    let to = facts
        .endpoint
        .context("no endpoint learned for the container")?;
    let banner = std::thread::spawn(move || wait_for_ssh_banner(SocketAddr::V4(to), SSHD_TIMEOUT));
    let home = match incus.passwd_entry(name, user.as_str())? {
        Some(fields) => fields[5].clone(),
        None => bail!("user {user} does not exist in {name}"),
    };
    let path = format!("{home}/.ssh/authorized_keys");
    let found = incus
        .read_file(name, &path)?
        .with_context(|| format!("{path} does not exist in {name}"))?;
    let mut have: Vec<String> = Vec::new();
    for line in found
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let key = PublicKey::parse_line(line, &path)?;
        have.push(key.fingerprint());
    }
    let mut want: Vec<String> = wanted.iter().map(PublicKey::fingerprint).collect();
    have.sort();
    want.sort();
    if have != want {
        bail!("{path} in {name} holds keys {have:?}, expected {want:?}");
    }
    banner
        .join()
        .expect("the banner check does not panic")
        .map_err(|err| why_no_banner(incus, name, err))
}

/// sshd not answering is often the container's or Incus's doing (a daemon
/// that stopped meanwhile): asks Incus, so the error says which.
fn why_no_banner(incus: &Incus, name: &str, err: anyhow::Error) -> anyhow::Error {
    match incus.instance(name) {
        Err(asked) => asked.context(format!("{err:#}; and asking Incus about {name}")),
        Ok(None) => err.context(format!("{name} is gone")),
        Ok(Some(instance)) if !instance.is_running() => {
            err.context(format!("{name} is {}", instance.status.to_lowercase()))
        }
        Ok(Some(_)) => err,
    }
}

/// Connects until sshd sends its `SSH-2.0-...` identification line.
pub(super) fn wait_for_ssh_banner(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last_error = String::new();
    while start.elapsed() < timeout {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut line = String::new();
                let mut reader = BufReader::new(stream.take(256));
                match reader.read_line(&mut line) {
                    Ok(_) if line.starts_with("SSH-") => return Ok(()),
                    Ok(_) => last_error = format!("unexpected greeting {:?}", line.trim()),
                    Err(err) => last_error = err.to_string(),
                }
            }
            Err(err) => last_error = err.to_string(),
        }
        // A refused connect costs next to nothing; a user would not wait.
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("sshd does not answer on {addr}: {last_error}")
}

fn report(spec: &Spec, facts: &Facts, took: Duration, json: bool) {
    let ip = facts.ipv4_text();
    let bastion = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "BASTION".into());
    let ssh = ssh_line(&spec.user, &bastion, facts.endpoint);
    if json {
        print_json(&serde_json::json!({
            "user": spec.user.as_str(),
            "container": spec.container,
            "ipv4": ip,
            "endpoint": facts.endpoint_text(),
            "jump_account": spec.user.as_str(),
            "ssh": ssh,
            "seconds": took.as_secs_f64(),
        }));
    } else {
        crate::outln!("container:    {}", spec.container);
        crate::outln!("ipv4:         {ip}");
        if facts.endpoint.is_some_and(|to| to.port() != 22) {
            crate::outln!("published at: {}", facts.endpoint_text());
        }
        crate::outln!("user:         {}", spec.user);
        crate::outln!("jump account: {}", spec.user);
        crate::outln!("ssh:          {ssh}");
    }
}

/// The command a user types to reach their container through `bastion`.
pub(super) fn ssh_line(user: &UserName, bastion: &str, to: Option<SocketAddrV4>) -> String {
    match to {
        Some(to) if to.port() != 22 => {
            format!(
                "ssh -J {user}@{bastion} -p {} {user}@{}",
                to.port(),
                to.ip()
            )
        }
        Some(to) => format!("ssh -J {user}@{bastion} {user}@{}", to.ip()),
        None => format!("ssh -J {user}@{bastion} {user}@<ipv4>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_member_or_group_names() {
        for good in ["m1", "@gpu", "bastion-2.example"] {
            assert_eq!(parse_target(good).as_deref(), Ok(good));
        }
        for bad in ["", "@", "-x", "a b", "m1;rm", "../m1", "@@g"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn banner_wait_reads_ssh_identification() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        });
        wait_for_ssh_banner(addr, Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = wait_for_ssh_banner(closed, Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("does not answer"), "{err}");
    }
}
