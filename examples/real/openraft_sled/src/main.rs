//! A node under test for the conformance suite (docs/protocol.md, wire protocol v1) that
//! translates every protocol operation to the public API of a real library:
//! `openraft-sledstore` 0.9.21 (openraft 0.9.21's sled-backed `RaftStorage`), used through
//! openraft's own `storage::Adaptor` (the v2 `RaftStateMachine` / `RaftLogStorage` traits).
//!
//!     openraft-sled-node --data-dir DIR
//!
//! Everything durable lives in the sled database the library opens in DIR and is written
//! only by the library (`apply`, `build_snapshot`, `install_snapshot`, `purge`). The shim
//! keeps in memory only the protocol bookkeeping (open flag, next expected index, snapshot
//! ids). See README.md for the mapping and its limits.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

use openraft::storage::{Adaptor, RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta};
use openraft_sledstore::{ExampleRequest, SerializableExampleStateMachine, SledStore, TypeConfig};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const MAX_KEY: usize = 1024;
const MAX_VALUE: usize = 1024 * 1024;
/// Term and leader of every log id the shim builds: the harness is the only leader.
const TERM: u64 = 1;
const LEADER: u64 = 0;

// Layout of the application data inside the library's `data` tree (String -> String):
//   "u:" + user key -> JSON [[commit_ts, value|null], ...] sorted by ts (MVCC versions,
//                      null = tombstone); a delete is a `Set` of the new version list.
//   "i:" + txn      -> JSON {"start_ts", "ops"} of a prepared intent, or "null" once resolved
//   "r:" + txn      -> "1": rollback marker of an aborted transaction
//   "h:ceiling", "h:cutover" -> decimal u64: the HLC header state (a state-machine value in
//                      openraft, so the library's snapshot carries it)
const USER: &str = "u:";
const INTENT: &str = "i:";
const ROLLBACK: &str = "r:";
const CEILING: &str = "h:ceiling";
const CUTOVER: &str = "h:cutover";

type Sm = Adaptor<TypeConfig, Arc<SledStore>>;
type Versions = Vec<(u64, Option<String>)>;

struct Fail {
    code: &'static str,
    message: String,
    extra: Map<String, Value>,
}

fn fail<T>(code: &'static str, message: impl Into<String>) -> Result<T, Fail> {
    Err(Fail { code, message: message.into(), extra: Map::new() })
}

fn need(ok: bool, code: &'static str, message: impl FnOnce() -> String) -> Result<(), Fail> {
    if ok {
        Ok(())
    } else {
        fail(code, message())
    }
}

fn storage<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Fail + '_ {
    move |e| Fail { code: "read_error", message: format!("{what}: {e}"), extra: Map::new() }
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(TERM, LEADER), index)
}

// ------------------------------------------------------------------ entry validation

#[derive(Clone, Debug)]
enum OpKind {
    Put(String),
    Del,
    Add(i128),
}

#[derive(Clone, Debug)]
struct Op {
    key: String,
    kind: OpKind,
}

impl Op {
    fn to_json(&self) -> Value {
        match &self.kind {
            OpKind::Put(v) => json!({"op": "put", "key": self.key, "value": v}),
            OpKind::Del => json!({"op": "del", "key": self.key}),
            OpKind::Add(d) => {
                let d: Value = if let Ok(x) = i64::try_from(*d) {
                    json!(x)
                } else {
                    json!(*d as u64)
                };
                json!({"op": "add", "key": self.key, "delta": d})
            }
        }
    }
}

#[derive(Debug)]
enum ProtoEntry {
    Raw { ops: Vec<Op>, ts: u64 },
    Txn { start_ts: u64, commit_ts: u64, reads: Vec<String>, ops: Vec<Op> },
    DeletePrefix { prefix: String, exclude: Option<String>, ts: u64 },
    Prepare { txn: String, ops: Vec<Op>, start_ts: u64 },
    Commit { txn: String, commit_ts: u64 },
    Abort { txn: String },
    HlcLease { ceiling: u64 },
    Control { opcode: String, value: u64 },
    Noop,
}

fn kind_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "raw" => &["ops", "ts"],
        "txn" => &["start_ts", "commit_ts", "reads", "ops"],
        "delete_prefix" => &["prefix", "exclude", "ts"],
        "prepare" => &["txn", "ops", "start_ts"],
        "commit" => &["txn", "commit_ts"],
        "abort" => &["txn"],
        "hlc_lease" => &["ceiling"],
        "control" => &["opcode", "value"],
        "noop" => &[],
        _ => return None,
    })
}

fn bad(where_: &str, what: &str) -> Fail {
    Fail { code: "bad_entry", message: format!("{where_}: {what}"), extra: Map::new() }
}

fn u64_field(v: &Value, where_: &str, low: u64) -> Result<u64, Fail> {
    match v.as_u64() {
        Some(x) if x >= low && !v.is_f64() => Ok(x),
        _ => Err(bad(where_, &format!("not an integer in [{low}, 2^64)"))),
    }
}

fn str_field(v: &Value, where_: &str, limit: usize) -> Result<String, Fail> {
    let s = v.as_str().ok_or_else(|| bad(where_, "must be a string"))?;
    if s.len() > limit {
        return fail("too_large", format!("{where_}: over {limit} bytes"));
    }
    Ok(s.to_string())
}

fn txn_field(v: &Value, where_: &str) -> Result<String, Fail> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(bad(where_, "must be a non-empty string")),
    }
}

fn ops_field(v: &Value, where_: &str) -> Result<Vec<Op>, Fail> {
    let list = match v.as_array() {
        Some(l) if !l.is_empty() => l,
        _ => return Err(bad(where_, "must be a non-empty list")),
    };
    let mut out = Vec::new();
    for (i, op) in list.iter().enumerate() {
        let w = format!("{where_}[{i}]");
        let obj = op.as_object().ok_or_else(|| bad(&w, "an op must be an object"))?;
        let key = str_field(obj.get("key").unwrap_or(&Value::Null), &format!("{w}.key"), MAX_KEY)?;
        let kind = match obj.get("op").and_then(Value::as_str) {
            Some("put") => OpKind::Put(str_field(
                obj.get("value").unwrap_or(&Value::Null),
                &format!("{w}.value"),
                MAX_VALUE,
            )?),
            Some("del") => OpKind::Del,
            Some("add") => {
                let d = obj.get("delta").unwrap_or(&Value::Null);
                let delta = if let Some(x) = d.as_i64() {
                    x as i128
                } else {
                    return Err(bad(&w, "op must be put, del, or add with an integer delta"));
                };
                OpKind::Add(delta)
            }
            _ => return Err(bad(&w, "op must be put, del, or add with an integer delta")),
        };
        out.push(Op { key, kind });
    }
    Ok(out)
}

fn parse_entry(raw: &Value) -> Result<ProtoEntry, Fail> {
    let obj = raw.as_object().ok_or_else(|| bad("entry", "not an object of a known kind"))?;
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let fields = kind_fields(kind).ok_or_else(|| bad("entry", "not an object of a known kind"))?;
    for k in obj.keys() {
        if k != "kind" && !fields.contains(&k.as_str()) {
            return Err(bad(kind, &format!("unexpected field {k:?}")));
        }
    }
    let null = Value::Null;
    let get = |f: &str| obj.get(f).unwrap_or(&null);
    let w = |f: &str| format!("{kind}.{f}");
    // Fields are checked in the order of kind_fields, like the reference.
    Ok(match kind {
        "raw" => {
            let ops = ops_field(get("ops"), &w("ops"))?;
            ProtoEntry::Raw { ops, ts: u64_field(get("ts"), &w("ts"), 0)? }
        }
        "txn" => {
            let start_ts = u64_field(get("start_ts"), &w("start_ts"), 0)?;
            let commit_ts = u64_field(get("commit_ts"), &w("commit_ts"), 1)?;
            if start_ts >= commit_ts {
                return Err(bad(kind, "start_ts must be < commit_ts"));
            }
            let reads = match obj.get("reads") {
                None | Some(Value::Null) if !obj.contains_key("reads") => Vec::new(),
                Some(Value::Array(l)) => {
                    l.iter().map(|k| str_field(k, &w("reads"), MAX_KEY)).collect::<Result<_, _>>()?
                }
                _ => return Err(bad(&w("reads"), "not a list")),
            };
            let ops = ops_field(get("ops"), &w("ops"))?;
            ProtoEntry::Txn { start_ts, commit_ts, reads, ops }
        }
        "delete_prefix" => {
            let prefix = str_field(get("prefix"), &w("prefix"), MAX_KEY)?;
            let exclude = match get("exclude") {
                Value::Null => None,
                v => Some(str_field(v, &w("exclude"), MAX_KEY)?),
            };
            ProtoEntry::DeletePrefix { prefix, exclude, ts: u64_field(get("ts"), &w("ts"), 0)? }
        }
        "prepare" => {
            let txn = txn_field(get("txn"), &w("txn"))?;
            let ops = ops_field(get("ops"), &w("ops"))?;
            ProtoEntry::Prepare { txn, ops, start_ts: u64_field(get("start_ts"), &w("start_ts"), 0)? }
        }
        "commit" => {
            let txn = txn_field(get("txn"), &w("txn"))?;
            ProtoEntry::Commit { txn, commit_ts: u64_field(get("commit_ts"), &w("commit_ts"), 1)? }
        }
        "abort" => ProtoEntry::Abort { txn: txn_field(get("txn"), &w("txn"))? },
        "hlc_lease" => ProtoEntry::HlcLease { ceiling: u64_field(get("ceiling"), &w("ceiling"), 0)? },
        "control" => {
            let opcode = txn_field(get("opcode"), &w("opcode"))?;
            let value = match obj.get("value") {
                None => 0,
                Some(v) => u64_field(v, &w("value"), 0)?,
            };
            ProtoEntry::Control { opcode, value }
        }
        _ => ProtoEntry::Noop,
    })
}

fn int64(text: &str) -> Option<i128> {
    // entry-semantics.md 2: an optional '-' and ASCII digits, at most 20 characters.
    let t = text;
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = t.parse().ok()?;
    (i64::MIN as i128..=i64::MAX as i128).contains(&v).then_some(v)
}

// ------------------------------------------------------------------ the node

struct Pending {
    index: u64,
    last_log_id: Option<LogId<u64>>,
    snapshot_id: String,
}

struct Node {
    data_dir: String,
    /// Diagnostic only (off by default): fsync the names sled 0.34.7 creates at open and
    /// never syncs itself (see README "Findings"), to look at the layer below that bug.
    diag_sync_names: bool,
    /// Diagnostic only (off by default): clear the library's `data` tree directly (bypassing
    /// the library) before its install_snapshot, to confirm that finding 1 (install does not
    /// replace the state machine) is the only cause of a failure.
    diag_clear_on_install: bool,
    store: Option<Arc<SledStore>>,
    sm: Option<Sm>,
    log: Option<Sm>,
    applied: u64,
    pending: BTreeMap<u64, Pending>,
    next_snapshot: u64,
    /// Index of the snapshot last persisted (or installed, or found at open); None: none yet.
    persisted: Option<u64>,
    /// In-memory HLC ceiling / cutover seen in this process lifetime (never decrease).
    mem_hlc: [u64; 2],
}

/// The effect of one protocol entry on the library's data tree: library key -> new value.
type Writes = BTreeMap<String, String>;

impl Node {
    fn new(data_dir: String) -> Self {
        Node {
            data_dir,
            diag_sync_names: false,
            diag_clear_on_install: false,
            store: None,
            sm: None,
            log: None,
            applied: 0,
            pending: BTreeMap::new(),
            next_snapshot: 1,
            persisted: None,
            mem_hlc: [0, 0],
        }
    }

    fn store(&self) -> Result<&Arc<SledStore>, Fail> {
        self.store.as_ref().ok_or(Fail { code: "not_open", message: "call open first".into(), extra: Map::new() })
    }

    // -- reads, all through the library's state machine --------------------------------

    async fn lib_get(&self, key: &str) -> Result<Option<String>, Fail> {
        let sm = self.store()?.state_machine.read().await;
        sm.get(key).map_err(storage("state machine get"))
    }

    /// The whole state machine, as the library serializes it for a snapshot.
    async fn lib_dump(&self) -> Result<SerializableExampleStateMachine, Fail> {
        let sm = self.store()?.state_machine.read().await;
        Ok(SerializableExampleStateMachine::from(&*sm))
    }

    async fn versions(&self, pending: &Writes, key: &str) -> Result<Versions, Fail> {
        let lk = format!("{USER}{key}");
        let raw = match pending.get(&lk) {
            Some(v) => Some(v.clone()),
            None => self.lib_get(&lk).await?,
        };
        Ok(match raw {
            None => Vec::new(),
            Some(s) => serde_json::from_str(&s).map_err(storage("decode versions"))?,
        })
    }

    async fn latest(&self, pending: &Writes, key: &str) -> Result<Option<String>, Fail> {
        Ok(self.versions(pending, key).await?.last().and_then(|v| v.1.clone()))
    }

    async fn h_value(&self, key: &str) -> Result<u64, Fail> {
        Ok(self.lib_get(key).await?.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    async fn intents(&self) -> Result<BTreeMap<String, Value>, Fail> {
        let dump = self.lib_dump().await?;
        let mut out = BTreeMap::new();
        for (k, v) in dump.data.range(INTENT.to_string()..) {
            let Some(txn) = k.strip_prefix(INTENT) else { break };
            let intent: Value = serde_json::from_str(v).map_err(storage("decode intent"))?;
            if !intent.is_null() {
                out.insert(txn.to_string(), intent);
            }
        }
        Ok(out)
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>, Fail> {
        let dump = self.lib_dump().await?;
        let mut out = Vec::new();
        let start = format!("{USER}{prefix}");
        for (k, v) in dump.data.range(start.clone()..) {
            if !k.starts_with(&start) {
                break;
            }
            let versions: Versions = serde_json::from_str(v).map_err(storage("decode versions"))?;
            if let Some((_, Some(val))) = versions.last() {
                out.push((k[USER.len()..].to_string(), val.clone()));
            }
        }
        Ok(out)
    }

    // -- the FSM: the entry's effect, computed from the library's current state -------------

    async fn put_version(&self, w: &mut Writes, key: &str, ts: u64, value: Option<String>) -> Result<(), Fail> {
        let mut vs = self.versions(w, key).await?;
        vs.retain(|(t, _)| *t != ts);
        vs.push((ts, value));
        vs.sort_by_key(|(t, _)| *t);
        w.insert(format!("{USER}{key}"), serde_json::to_string(&vs).unwrap());
        Ok(())
    }

    /// Ops in order at ts (an add sees earlier ops of the same batch). None: type_error.
    async fn mutations(&self, ops: &[Op], ts: u64, w: &mut Writes) -> Result<bool, Fail> {
        let mut cells: BTreeMap<String, Option<String>> = BTreeMap::new();
        for op in ops {
            let v = match &op.kind {
                OpKind::Put(v) => Some(v.clone()),
                OpKind::Del => None,
                OpKind::Add(d) => {
                    let base = match cells.get(&op.key) {
                        Some(b) => b.clone(),
                        None => self.latest(w, &op.key).await?,
                    };
                    let cur = match base {
                        None => 0,
                        Some(b) => match int64(&b) {
                            Some(x) => x,
                            None => return Ok(false),
                        },
                    };
                    let total = cur + d;
                    if !(i64::MIN as i128..=i64::MAX as i128).contains(&total) {
                        return Ok(false);
                    }
                    Some(total.to_string())
                }
            };
            cells.insert(op.key.clone(), v);
        }
        for (k, v) in cells {
            self.put_version(w, &k, ts, v).await?;
        }
        Ok(true)
    }

    async fn newer(&self, keys: &std::collections::BTreeSet<String>, start_ts: u64) -> Result<std::collections::BTreeSet<u64>, Fail> {
        let mut out = std::collections::BTreeSet::new();
        for k in keys {
            for (ts, _) in self.versions(&Writes::new(), k).await? {
                if ts > start_ts {
                    out.insert(ts);
                }
            }
        }
        Ok(out)
    }

    async fn locked(&self, keys: &std::collections::BTreeSet<String>, own: &str) -> Result<bool, Fail> {
        for (txn, intent) in self.intents().await? {
            if txn == own {
                continue;
            }
            let ops = intent["ops"].as_array().cloned().unwrap_or_default();
            if ops.iter().any(|o| o["key"].as_str().map(|k| keys.contains(k)).unwrap_or(false)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// (result, writes) of one entry; the writes go to the library in one apply call.
    async fn run(&self, e: &ProtoEntry) -> Result<(&'static str, Writes), Fail> {
        let mut w = Writes::new();
        let result = match e {
            ProtoEntry::Raw { ops, ts } => {
                if self.mutations(ops, *ts, &mut w).await? { "ok" } else { return Ok(("type_error", Writes::new())) }
            }
            ProtoEntry::Txn { start_ts, commit_ts, reads, ops } => {
                let written: std::collections::BTreeSet<String> = ops.iter().map(|o| o.key.clone()).collect();
                let mut checked = written.clone();
                checked.extend(reads.iter().cloned());
                let newer = self.newer(&checked, *start_ts).await?;
                let locked = self.locked(&checked, "").await?;
                if newer.is_empty() && !locked {
                    if self.mutations(ops, *commit_ts, &mut w).await? { "ok" } else { return Ok(("type_error", Writes::new())) }
                } else {
                    let mut landed = true;
                    for k in &written {
                        if !self.versions(&w, k).await?.iter().any(|(t, _)| t == commit_ts) {
                            landed = false;
                        }
                    }
                    if landed && newer.len() == 1 && newer.contains(commit_ts) && !locked {
                        "already_landed"
                    } else {
                        "conflict"
                    }
                }
            }
            ProtoEntry::DeletePrefix { prefix, exclude, ts } => {
                for (k, _) in self.scan(prefix).await? {
                    if exclude.as_ref().map(|x| k.starts_with(x.as_str())).unwrap_or(false) {
                        continue;
                    }
                    self.put_version(&mut w, &k, *ts, None).await?;
                }
                "ok"
            }
            ProtoEntry::Prepare { txn, ops, start_ts } => {
                if self.lib_get(&format!("{ROLLBACK}{txn}")).await?.is_some() {
                    "aborted"
                } else {
                    let keys = ops.iter().map(|o| o.key.clone()).collect();
                    if !self.newer(&keys, *start_ts).await?.is_empty() || self.locked(&keys, txn).await? {
                        "conflict"
                    } else {
                        let intent = json!({"start_ts": start_ts,
                                            "ops": ops.iter().map(Op::to_json).collect::<Vec<_>>()});
                        w.insert(format!("{INTENT}{txn}"), intent.to_string());
                        "ok"
                    }
                }
            }
            ProtoEntry::Commit { txn, commit_ts } => {
                let intent = self.intents().await?.remove(txn);
                match intent {
                    None => "txn_not_found",
                    Some(intent) => {
                        let ops = ops_field(&intent["ops"], "intent.ops")?;
                        if !self.mutations(&ops, *commit_ts, &mut w).await? {
                            return Ok(("type_error", Writes::new()));
                        }
                        w.insert(format!("{INTENT}{txn}"), "null".into());
                        "ok"
                    }
                }
            }
            ProtoEntry::Abort { txn } => {
                if self.lib_get(&format!("{INTENT}{txn}")).await?.is_some() {
                    w.insert(format!("{INTENT}{txn}"), "null".into());
                }
                w.insert(format!("{ROLLBACK}{txn}"), "1".into());
                "ok"
            }
            ProtoEntry::HlcLease { ceiling } => {
                if *ceiling > self.h_value(CEILING).await? {
                    w.insert(CEILING.into(), ceiling.to_string());
                }
                "ok"
            }
            ProtoEntry::Control { opcode, value } => {
                if opcode == "cutover" && *value > self.h_value(CUTOVER).await? {
                    w.insert(CUTOVER.into(), value.to_string());
                }
                "ok"
            }
            ProtoEntry::Noop => "ok",
        };
        Ok((result, w))
    }

    // -- protocol ops ----------------------------------------------------------------------

    async fn open(&mut self) -> Result<Value, Fail> {
        need(self.store.is_none(), "already_open", || "already open".into())?;
        let db = sled::open(&self.data_dir).map_err(storage("sled::open"))?;
        if self.diag_sync_names {
            for name in ["conf", "db", "blobs", ""] {
                let path = std::path::Path::new(&self.data_dir).join(name);
                std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(storage("diagnostic fsync"))?;
            }
        }
        let store = SledStore::new(Arc::new(db)).await;
        let (mut log, mut sm) = Adaptor::new(store.clone());

        // The library's start-up path (openraft StorageHelper::get_initial_state): the state
        // machine is durable; its applied log id is read from it, the snapshot only located.
        let (applied, _membership) = sm.applied_state().await.map_err(storage("applied_state"))?;
        let current = sm.get_current_snapshot().await.map_err(storage("get_current_snapshot"))?;
        let purged = log.get_log_state().await.map_err(storage("get_log_state"))?.last_purged_log_id;
        let have = applied.map(|l| l.index);
        let snap = current.as_ref().and_then(|s| s.meta.last_log_id).map(|l| l.index).unwrap_or(0);
        let current_present = current.is_some();
        let (outcome, reason, effective) = match (have, current) {
            (Some(h), _) if h >= snap => ("skipped", Value::Null, h),
            (_, Some(s)) => {
                // The store is behind its own snapshot (or has no applied log id): openraft
                // never restores at start-up; a follower in this state gets the snapshot
                // from the leader, i.e. install_snapshot. Do that with the node's own one.
                let mut data = sm.begin_receiving_snapshot().await.map_err(storage("begin_receiving_snapshot"))?;
                let body = s.snapshot.into_inner();
                data.get_mut().extend_from_slice(&body);
                sm.install_snapshot(&s.meta, data).await.map_err(storage("install_snapshot"))?;
                let reason = if have.is_none() { json!("missing_meta") } else { Value::Null };
                (if have.is_none() { "fallback" } else { "executed" }, reason, snap)
            }
            (None, None) => ("fallback", json!("missing_meta"), 0),
            (Some(_), None) => unreachable!(),
        };
        let outcome = if have.is_none() { "fallback" } else { outcome };
        self.store = Some(store);
        self.sm = Some(sm);
        self.log = Some(log);
        self.applied = effective;
        self.persisted = current_present.then_some(snap);
        let gap = have.map(|h| json!(h as i128 - snap as i128)).unwrap_or(Value::Null);
        Ok(json!({"outcome": outcome, "reason": reason, "have": have, "snap": snap,
                  "effective": effective, "gap": gap,
                  "compacted": purged.map(|l| l.index).unwrap_or(0),
                  "last_applied": effective}))
    }

    async fn apply(&mut self, req: &Value) -> Result<Value, Fail> {
        self.store()?;
        let index = match req.get("index") {
            Some(v) if v.is_u64() => v.as_u64().unwrap(),
            None => return fail("bad_request", "apply.index is missing"),
            Some(other) => return fail("bad_index", format!("bad index {other}")),
        };
        let raw_entry = req.get("entry").ok_or(Fail { code: "bad_request", message: "apply.entry is missing".into(), extra: Map::new() })?;
        let entry = parse_entry(raw_entry)?;
        need(index == 0 || index == self.applied + 1, "bad_index", || {
            format!("index {index} is not {} (or 0, a direct write)", self.applied + 1)
        })?;
        let (result, writes) = self.run(&entry).await?;
        // One protocol entry = one library `apply` call: all its Sets (or one Blank entry)
        // carry the same log id, and the library commits them in one sled transaction
        // together with last_applied_log, then flushes.
        let lid = if index > 0 {
            log_id(index)
        } else {
            // A direct write: openraft has no write path outside the log. Re-apply at the
            // current applied log id so the applied index does not move (or at index 0 on a
            // store that never applied anything).
            if writes.is_empty() {
                return Ok(json!({"result": result}));
            }
            let sm = self.sm.as_mut().unwrap();
            sm.applied_state().await.map_err(storage("applied_state"))?.0.unwrap_or(log_id(0))
        };
        let mut entries: Vec<Entry<TypeConfig>> = writes
            .into_iter()
            .map(|(key, value)| Entry { log_id: lid, payload: EntryPayload::Normal(ExampleRequest::Set { key, value }) })
            .collect();
        if entries.is_empty() {
            entries.push(Entry { log_id: lid, payload: EntryPayload::Blank });
        }
        let sm = self.sm.as_mut().unwrap();
        sm.apply(entries).await.map_err(|e| Fail { code: "read_error", message: format!("apply: {e}"), extra: Map::new() })?;
        if index > 0 {
            self.applied = index;
        }
        match entry {
            ProtoEntry::HlcLease { ceiling } => self.mem_hlc[0] = self.mem_hlc[0].max(ceiling),
            ProtoEntry::Control { ref opcode, value } if opcode == "cutover" => self.mem_hlc[1] = self.mem_hlc[1].max(value),
            _ => {}
        }
        Ok(json!({"result": result}))
    }

    async fn snapshot_begin(&mut self) -> Result<Value, Fail> {
        self.store()?;
        // openraft builds and saves a snapshot in one step (RaftSnapshotBuilder::build_snapshot
        // of openraft-sledstore serializes the state machine AND writes it as the current
        // snapshot, flushed). So "begin" is the library's build, which also persists.
        let sm = self.sm.as_mut().unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.map_err(storage("build_snapshot"))?;
        let index = snapshot.meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        self.pending.insert(id, Pending { index, last_log_id: snapshot.meta.last_log_id, snapshot_id: snapshot.meta.snapshot_id.clone() });
        Ok(json!({"snapshot": id, "index": index}))
    }

    async fn snapshot_persist(&mut self, req: &Value) -> Result<Value, Fail> {
        self.store()?;
        let site = req.get("site").and_then(Value::as_str).unwrap_or("local");
        need(site == "local" || site == "config", "bad_request", || format!("site {site:?}"))?;
        let id = req.get("snapshot").and_then(Value::as_u64);
        let p = id.and_then(|i| self.pending.remove(&i));
        let Some(p) = p else { return fail("unknown_snapshot", format!("id {:?}", req.get("snapshot"))) };
        if let Some(current) = self.persisted {
            need(p.index > current, "snapshot_out_of_date", || {
                format!("snapshot {} at {} is not newer than {current}", p.snapshot_id, p.index)
            })?;
        }
        // The snapshot is already saved by build_snapshot; what is left is openraft's log
        // compaction after a snapshot: purge the log up to the snapshot's last log id.
        let log = self.log.as_mut().unwrap();
        if let Some(lid) = p.last_log_id {
            log.purge(lid).await.map_err(storage("purge"))?;
        }
        self.persisted = Some(p.index);
        Ok(json!({"index": p.index, "pinned": false, "compacted": p.index}))
    }

    async fn install_snapshot(&mut self, req: &Value) -> Result<Value, Fail> {
        self.store()?;
        let index = match req.get("index") {
            Some(v) if v.is_u64() => v.as_u64().unwrap(),
            Some(_) => return fail("snapshot_out_of_date", "install_snapshot.index must be an unsigned integer above the applied index"),
            None => return fail("bad_request", "install_snapshot.index is missing"),
        };
        let mut header = [0u64; 2];
        for (i, f) in ["ceiling", "cutover"].iter().enumerate() {
            match req.get(*f) {
                Some(v) if v.is_u64() => header[i] = v.as_u64().unwrap(),
                None => header[i] = 0,
                _ => return fail("bad_snapshot", format!("install_snapshot.{f} must be an unsigned 64-bit integer")),
            }
        }
        let no_rows = Vec::new();
        let rows = match req.get("rows") {
            Some(Value::Array(r)) => r,
            None => &no_rows,
            _ => return fail("bad_snapshot", "install_snapshot.rows must be a list of [key, value, commit_ts]"),
        };
        let mut data: BTreeMap<String, String> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            let bad_row = || Fail { code: "bad_snapshot", message: format!("install_snapshot.rows[{i}]"), extra: Map::new() };
            let r = row.as_array().filter(|r| r.len() == 3).ok_or_else(bad_row)?;
            let key = r[0].as_str().filter(|k| k.len() <= MAX_KEY).ok_or_else(bad_row)?;
            let value = r[1].as_str().filter(|v| v.len() <= MAX_VALUE).ok_or_else(bad_row)?;
            let ts = r[2].as_u64().filter(|_| !r[2].is_f64()).ok_or_else(bad_row)?;
            let lk = format!("{USER}{key}");
            if data.contains_key(&lk) {
                return Err(bad_row());
            }
            data.insert(lk, serde_json::to_string(&vec![(ts, Some(value))]).unwrap());
        }
        need(index > self.applied, "snapshot_out_of_date", || {
            format!("installed snapshot index {index} must be > the applied index {}", self.applied)
        })?;
        // The HLC ceiling and cutover only move forward on this node (entry-semantics.md 7:
        // install applies the header with max); they live in the state machine here, so the
        // installed state carries max(current, installed).
        let ceiling = header[0].max(self.h_value(CEILING).await?).max(self.mem_hlc[0]);
        let cutover = header[1].max(self.h_value(CUTOVER).await?).max(self.mem_hlc[1]);
        data.insert(CEILING.into(), ceiling.to_string());
        data.insert(CUTOVER.into(), cutover.to_string());
        // What the sender's library would ship: its serialized state machine.
        let body = SerializableExampleStateMachine {
            last_applied_log: Some(log_id(index)),
            last_membership: Default::default(),
            data,
        };
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(index)),
            last_membership: Default::default(),
            snapshot_id: format!("{TERM}-{LEADER}-{index}-installed"),
        };
        if self.diag_clear_on_install {
            let tree = self.store()?.state_machine.read().await.db.open_tree("data").map_err(storage("diag"))?;
            tree.clear().map_err(storage("diag"))?;
        }
        let sm = self.sm.as_mut().unwrap();
        let mut buf = sm.begin_receiving_snapshot().await.map_err(storage("begin_receiving_snapshot"))?;
        buf.get_mut().extend_from_slice(&serde_json::to_vec(&body).unwrap());
        sm.install_snapshot(&meta, buf).await.map_err(storage("install_snapshot"))?;
        // openraft purges the log up to the installed snapshot (Engine: install_full_snapshot).
        let log = self.log.as_mut().unwrap();
        log.purge(log_id(index)).await.map_err(storage("purge"))?;
        self.applied = index;
        self.persisted = Some(index);
        self.pending.clear();
        Ok(json!({"index": index}))
    }

    async fn last_applied_index(&mut self) -> Result<Value, Fail> {
        self.store()?;
        let sm = self.sm.as_mut().unwrap();
        let (applied, _) = sm.applied_state().await.map_err(storage("applied_state"))?;
        Ok(match applied {
            Some(l) => json!({"index": l.index, "present": true}),
            None => json!({"index": 0, "present": false}),
        })
    }

    async fn handle(&mut self, req: &Value) -> Result<Value, Fail> {
        let op = req.get("op").and_then(Value::as_str).unwrap_or("");
        match op {
            "hello" => {
                let versions = req.get("versions").and_then(Value::as_array);
                need(versions.map(|v| v.iter().any(|x| x.as_u64() == Some(1))).unwrap_or(true), "bad_request", || "version 1 only".into())?;
                let durability = req.get("config").and_then(|c| c.get("durability")).and_then(Value::as_str).unwrap_or("synced");
                need(durability != "unsynced", "unsupported", || "openraft-sledstore flushes every apply: synced mode only".into())?;
                need(durability == "synced", "bad_request", || format!("durability {durability:?}"))?;
                need(self.store.is_none(), "already_open", || "hello must come before open".into())?;
                return Ok(json!({
                    "version": 1,
                    "implementation": {"name": "openraft-sledstore (openraft 0.9.21 Adaptor) shim", "version": "0.9.21"},
                    "capabilities": ["reader", "header_applier", "install_snapshot", "pin_after_restore"],
                    "entry_kinds": ["abort", "commit", "control", "delete_prefix", "hlc_lease", "noop", "prepare", "raw", "txn"],
                }));
            }
            "set_durable_applied_index" | "failpoint" | "tamper" => {
                return fail("unsupported", format!("{op}: not a capability of this node (see README)"))
            }
            "open" => return self.open().await,
            "apply" | "snapshot_begin" | "snapshot_persist" | "get" | "scan" | "digest" | "hlc"
            | "last_applied_index" | "install_snapshot" => {}
            _ => return fail("unknown_op", format!("{op:?}: unknown op")),
        }
        self.store()?;
        match op {
            "apply" => self.apply(req).await,
            "snapshot_begin" => self.snapshot_begin().await,
            "snapshot_persist" => self.snapshot_persist(req).await,
            "install_snapshot" => self.install_snapshot(req).await,
            "last_applied_index" => self.last_applied_index().await,
            "get" => {
                let key = req.get("key").and_then(Value::as_str).ok_or(Fail { code: "bad_request", message: "key".into(), extra: Map::new() })?;
                Ok(json!({"value": self.latest(&Writes::new(), key).await?}))
            }
            "scan" => {
                let prefix = req.get("prefix").and_then(Value::as_str).unwrap_or("");
                let items: Vec<Value> = self.scan(prefix).await?.into_iter().map(|(k, v)| json!([k, v])).collect();
                Ok(json!({"items": items}))
            }
            "digest" => {
                let items: Vec<Value> = self.scan("").await?.into_iter().map(|(k, v)| json!([k, v])).collect();
                let canon = serde_json::to_string(&items).unwrap();
                Ok(json!({"digest": format!("{:x}", Sha256::digest(canon.as_bytes()))}))
            }
            "hlc" => {
                let c = self.h_value(CEILING).await?.max(self.mem_hlc[0]);
                let k = self.h_value(CUTOVER).await?.max(self.mem_hlc[1]);
                self.mem_hlc = [c, k];
                Ok(json!({"ceiling": c, "cutover": k}))
            }
            _ => unreachable!(),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data_dir = match args.iter().position(|a| a == "--data-dir").and_then(|i| args.get(i + 1)) {
        Some(d) => d.clone(),
        None => {
            eprintln!("usage: {} --data-dir DIR", args[0]);
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let mut node = Node::new(data_dir);
    node.diag_sync_names = args.iter().any(|a| a == "--diag-sync-names");
    node.diag_clear_on_install = args.iter().any(|a| a == "--diag-clear-on-install");
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut send = |v: Value| {
        let mut s = serde_json::to_string(&v).unwrap();
        s.push('\n');
        out.write_all(s.as_bytes()).unwrap();
        out.flush().unwrap();
    };
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(&line);
        if let Err(e) = &parsed {
            eprintln!("openraft-sled-node: unparsable request: {e}");
            {
                // A key or value that is not valid Unicode text (a lone surrogate escape):
                // serde_json cannot represent it. Answer the request, by its id, as malformed.
                if let Some(req) = without_surrogates(&line) {
                    let id = req.get("id").cloned().unwrap_or(Value::Null);
                    let code = if req.get("op").and_then(Value::as_str) == Some("apply") { "bad_entry" } else { "bad_request" };
                    send(json!({"id": id, "ok": false, "error": {"code": code, "message": "not valid Unicode text (lone surrogate)"}}));
                    continue;
                }
            }
        }
        let req: Value = match parsed {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                send(json!({"id": null, "ok": false, "error": {"code": "bad_request", "message": "not a JSON object"}}));
                continue;
            }
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let op = req.get("op").and_then(Value::as_str).unwrap_or("").to_string();
        let reply = if op == "shutdown" {
            json!({"id": id, "ok": true, "result": {}})
        } else {
            match rt.block_on(node.handle(&req)) {
                Ok(result) => {
                    if op == "open" {
                        // C5: the cold-start event only once open succeeded.
                        let mut ev = result.as_object().unwrap().clone();
                        ev.insert("event".into(), json!("cold_start"));
                        send(Value::Object(ev));
                    }
                    json!({"id": id, "ok": true, "result": result})
                }
                Err(f) => {
                    let mut err = f.extra;
                    err.insert("code".into(), json!(f.code));
                    err.insert("message".into(), json!(f.message));
                    json!({"id": id, "ok": false, "error": err})
                }
            }
        };
        send(reply);
        if op == "shutdown" {
            if let Some(store) = node.store.take() {
                drop(node.sm.take());
                drop(node.log.take());
                drop(store);
            }
            break;
        }
    }
}

/// The request with every UTF-16 surrogate escape replaced by U+FFFD, only to read its id/op.
fn without_surrogates(line: &str) -> Option<Value> {
    let mut out = String::with_capacity(line.len());
    let mut replaced = false;
    let b = line.as_bytes();
    let mut i = 0;
    while i < line.len() {
        if b[i] == b'\\' && i + 1 < line.len() && b[i + 1].is_ascii() {
            if b[i + 1] == b'u' && i + 6 <= line.len() && b[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit) {
                let cp = u16::from_str_radix(&line[i + 2..i + 6], 16).ok()?;
                if (0xD800..=0xDFFF).contains(&cp) {
                    out.push_str("\\ufffd");
                    replaced = true;
                    i += 6;
                    continue;
                }
            }
            out.push_str(&line[i..i + 2]);
            i += 2;
            continue;
        }
        let ch = line[i..].chars().next()?;
        out.push(ch);
        i += ch.len_utf8();
    }
    if !replaced {
        return None;
    }
    serde_json::from_str::<Value>(&out).ok().filter(Value::is_object)
}
