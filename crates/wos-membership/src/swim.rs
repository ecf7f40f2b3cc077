//! The membership actor around foca.

use std::collections::HashMap;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foca::{
    BroadcastHandler, Config, Foca, Identity, Invalidates, Notification, PeriodicParams,
    PostcardCodec, Runtime, State, Timer,
};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use wos_api::Sensors;

/// Path on which nodes accept gossip datagrams.
pub const GOSSIP_PATH: &str = "/internal/gossip";

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A node's identity in SWIM. `bump` grows with every start of the process,
/// so that a restarted node wins over the memory of its previous life.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct SwimId {
    name: String,
    addr: String,
    bump: u64,
}

impl Identity for SwimId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            name: self.name.clone(),
            addr: self.addr.clone(),
            bump: self.bump.saturating_add(1).max(unix_millis()),
        })
    }

    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// The key of a sensor broadcast: a newer version from the same node
/// replaces an older one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SensorKey {
    node: String,
    version: u64,
}

impl Invalidates for SensorKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && self.version > other.version
    }
}

#[derive(Serialize, Deserialize)]
struct SensorMsg {
    key: SensorKey,
    sensors: Sensors,
}

/// Latest sensors per node name, with when we received them.
type SensorTable = Arc<Mutex<HashMap<String, (u64, Sensors, Instant)>>>;

struct SensorHandler {
    table: SensorTable,
}

impl BroadcastHandler<SwimId> for SensorHandler {
    type Key = SensorKey;
    type Error = postcard::Error;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&SwimId>,
    ) -> Result<Option<SensorKey>, postcard::Error> {
        let (key, _) = postcard::take_from_bytes::<SensorKey>(data)?;
        let mut table = self.table.lock().expect("sensor table lock");
        if table
            .get(&key.node)
            .is_some_and(|(v, _, _)| *v >= key.version)
        {
            return Ok(None);
        }
        let msg: SensorMsg = postcard::from_bytes(data)?;
        table.insert(key.node.clone(), (key.version, msg.sensors, Instant::now()));
        Ok(Some(key))
    }
}

/// Liveness as SWIM sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
}

/// One node as this node observes it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub name: String,
    pub addr: String,
    pub state: MemberState,
    pub sensors: Option<Sensors>,
    /// When we last received this node's sensors (its freshest sign of life).
    pub last_heard: Option<Instant>,
}

/// Timing of failure detection.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
    pub sensor_period: Duration,
}

impl Default for MembershipConfig {
    /// Suspect within about 1-3 s of a crash, dead within about 5-8 s.
    fn default() -> Self {
        MembershipConfig {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(400),
            suspect_to_down: Duration::from_secs(4),
            sensor_period: Duration::from_secs(2),
        }
    }
}

fn foca_config(c: &MembershipConfig) -> Config {
    let mut cfg = Config::new_lan(NonZeroU32::new(5).expect("nonzero"));
    cfg.probe_period = c.probe_period;
    cfg.probe_rtt = c.probe_rtt;
    cfg.suspect_to_down_after = c.suspect_to_down;
    cfg.max_transmissions = NonZeroU8::new(6).expect("nonzero");
    cfg.remove_down_after = Some(Duration::from_secs(24 * 3600));
    cfg.max_packet_size = NonZeroUsize::new(16 * 1024).expect("nonzero");
    cfg.periodic_gossip = Some(PeriodicParams {
        frequency: Duration::from_millis(200),
        num_members: NonZeroUsize::new(3).expect("nonzero"),
    });
    cfg
}

enum Input {
    Data(Vec<u8>),
    Seeds(Vec<String>),
}

/// Handle to the membership actor of this node. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    input: mpsc::Sender<Input>,
    view: watch::Receiver<Vec<(SwimId, State)>>,
    sensors: SensorTable,
    me: (String, String),
}

type Swim = Foca<SwimId, PostcardCodec, StdRng, SensorHandler>;

#[derive(Default)]
struct Collect {
    out: Vec<(String, Vec<u8>)>,
    timers: Vec<(Duration, Timer<SwimId>)>,
}

impl Runtime<SwimId> for Collect {
    fn notify(&mut self, n: Notification<'_, SwimId>) {
        match n {
            Notification::MemberUp(id) => tracing::info!("member up: {} ({})", id.name, id.addr),
            Notification::MemberDown(id) => {
                tracing::warn!("member down: {} ({})", id.name, id.addr)
            }
            other => tracing::debug!("membership: {other:?}"),
        }
    }

    fn send_to(&mut self, to: SwimId, data: &[u8]) {
        self.out.push((to.addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<SwimId>, after: Duration) {
        self.timers.push((after, event));
    }
}

impl Membership {
    /// Starts the actor for node `name` reachable at `addr`. `sensors` is read
    /// every `sensor_period` and gossiped; `http` carries the datagrams.
    pub fn start(
        name: &str,
        addr: &str,
        cfg: MembershipConfig,
        http: reqwest::Client,
        sensors: impl Fn() -> Sensors + Send + 'static,
    ) -> Membership {
        let me = SwimId {
            name: name.to_string(),
            addr: addr.to_string(),
            bump: unix_millis(),
        };
        let table: SensorTable = Arc::default();
        let (input_tx, input_rx) = mpsc::channel(1024);
        let (view_tx, view_rx) = watch::channel(Vec::new());
        let foca = Foca::with_custom_broadcast(
            me.clone(),
            foca_config(&cfg),
            rand::make_rng::<StdRng>(),
            PostcardCodec,
            SensorHandler {
                table: table.clone(),
            },
        );
        let actor = Actor {
            foca,
            rt: Collect::default(),
            http,
            seeds: Vec::new(),
            view_tx,
            last_version: 0,
        };
        tokio::spawn(actor.run(input_rx, cfg, sensors));
        Membership {
            input: input_tx,
            view: view_rx,
            sensors: table,
            me: (me.name, me.addr),
        }
    }

    /// Hands a datagram received on [`GOSSIP_PATH`] to the detector.
    pub fn receive(&self, data: Vec<u8>) {
        // Under overload, dropping a datagram is what UDP would do too.
        let _ = self.input.try_send(Input::Data(data));
    }

    /// Tells the detector which addresses belong to the cell, so that it can
    /// (re)join them when it is alone or was cut off.
    pub fn set_seeds(&self, addrs: Vec<String>) {
        let _ = self.input.try_send(Input::Seeds(addrs));
    }

    /// Every node this node knows of, itself included.
    pub fn members(&self) -> Vec<MemberView> {
        let table = self.sensors.lock().expect("sensor table lock").clone();
        let sensors_of = |name: &str| table.get(name).map(|(_, s, at)| (s.clone(), *at));
        let mut out: Vec<MemberView> = Vec::new();
        let (my_name, my_addr) = &self.me;
        let mine = sensors_of(my_name);
        out.push(MemberView {
            name: my_name.clone(),
            addr: my_addr.clone(),
            state: MemberState::Alive,
            sensors: mine.as_ref().map(|m| m.0.clone()),
            last_heard: Some(Instant::now()),
        });
        // After a restart or a renewal one node may appear under several
        // identities: keep the newest.
        let mut newest: HashMap<String, (SwimId, State)> = HashMap::new();
        for (id, state) in self.view.borrow().iter() {
            if &id.name == my_name || id.name.is_empty() {
                continue;
            }
            if newest
                .get(&id.name)
                .is_none_or(|(old, _)| old.bump < id.bump)
            {
                newest.insert(id.name.clone(), (id.clone(), *state));
            }
        }
        for (id, state) in newest.values() {
            let s = sensors_of(&id.name);
            out.push(MemberView {
                name: id.name.clone(),
                addr: id.addr.clone(),
                state: match state {
                    State::Alive => MemberState::Alive,
                    State::Suspect => MemberState::Suspect,
                    State::Down => MemberState::Dead,
                },
                sensors: s.as_ref().map(|m| m.0.clone()),
                last_heard: s.map(|m| m.1),
            });
        }
        out
    }
}

struct Actor {
    foca: Swim,
    rt: Collect,
    http: reqwest::Client,
    seeds: Vec<String>,
    view_tx: watch::Sender<Vec<(SwimId, State)>>,
    last_version: u64,
}

fn log(r: Result<(), foca::Error>) {
    if let Err(e) = r {
        tracing::debug!("foca: {e}");
    }
}

impl Actor {
    async fn run(
        mut self,
        mut input: mpsc::Receiver<Input>,
        cfg: MembershipConfig,
        sensors: impl Fn() -> Sensors + Send + 'static,
    ) {
        let (timer_tx, mut timer_rx) = mpsc::unbounded_channel::<Timer<SwimId>>();
        let mut rejoin = tokio::time::interval(Duration::from_secs(2));
        let mut publish = tokio::time::interval(cfg.sensor_period);
        loop {
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(Input::Data(d)) => log(self.foca.handle_data(&d, &mut self.rt)),
                    Some(Input::Seeds(s)) => self.seeds = s,
                    None => return,
                },
                Some(first) = timer_rx.recv() => {
                    let mut batch = vec![first];
                    while let Ok(t) = timer_rx.try_recv() {
                        batch.push(t);
                    }
                    // Timers due together must run in foca's order.
                    batch.sort();
                    for t in batch {
                        log(self.foca.handle_timer(t, &mut self.rt));
                    }
                }
                _ = rejoin.tick() => self.rejoin(),
                _ = publish.tick() => self.publish(sensors()),
            }
            self.flush(&timer_tx);
        }
    }

    /// Announces to every seed that is not an active member: joins at start,
    /// and rejoins after a partition heals or when foca went idle.
    fn rejoin(&mut self) {
        let me = self.foca.identity().addr.clone();
        let active: Vec<String> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr.clone())
            .collect();
        for seed in self.seeds.clone() {
            if seed != me && !active.contains(&seed) {
                let placeholder = SwimId {
                    name: String::new(),
                    addr: seed,
                    bump: 0,
                };
                log(self.foca.announce(placeholder, &mut self.rt));
            }
        }
    }

    fn publish(&mut self, sensors: Sensors) {
        let version = unix_millis().max(self.last_version + 1);
        self.last_version = version;
        let key = SensorKey {
            node: self.foca.identity().name.clone(),
            version,
        };
        let Ok(bytes) = postcard::to_allocvec(&SensorMsg { key, sensors }) else {
            return;
        };
        log(self.foca.add_broadcast(&bytes).map(|_| ()));
        log(self.foca.broadcast(&mut self.rt));
    }

    fn flush(&mut self, timer_tx: &mpsc::UnboundedSender<Timer<SwimId>>) {
        for (addr, bytes) in std::mem::take(&mut self.rt.out) {
            let http = self.http.clone();
            tokio::spawn(async move {
                let url = format!("https://{addr}{GOSSIP_PATH}");
                let sent = http
                    .post(&url)
                    .timeout(Duration::from_secs(1))
                    .body(bytes)
                    .send()
                    .await;
                if let Err(e) = sent {
                    tracing::trace!("gossip to {addr}: {e}");
                }
            });
        }
        for (after, timer) in std::mem::take(&mut self.rt.timers) {
            let tx = timer_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(timer);
            });
        }
        let view: Vec<(SwimId, State)> = self
            .foca
            .iter_membership_state()
            .map(|m| (m.id().clone(), m.state()))
            .collect();
        self.view_tx.send_if_modified(|cur| {
            if *cur != view {
                *cur = view;
                true
            } else {
                false
            }
        });
    }
}
