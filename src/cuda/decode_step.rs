//! The CUDA backend's replayable decode step: fixed buffers, the step's
//! position in device memory, and the recorded steps it replays (see
//! [`super::step_graph`]).
//!
//! Between `begin` and `end` (the model's
//! [`crate::model::Backend::begin_decode_step`] /
//! [`crate::model::Backend::end_decode_step`]) of every one-token step:
//!
//! - every operation's output comes from the step **arena**: the i-th
//!   output of the step takes slot i, allocated at the first step (sized
//!   for the most rows) and reused while nothing else holds it, so the
//!   step's launches name the same buffers every step;
//! - the step's **position** is uploaded once, before the step's first
//!   launch, into [`StepPosition`], and the self-attention **key lengths**
//!   (`position + 1` per row) into a `[rows]` buffer. The embedding reads
//!   the position on the device, the KV-cache write adds it to its
//!   destination, and the self-attention runs over the cache's whole
//!   capacity with those key lengths (for one query per row, the causal
//!   mask and that length mask are the same mask), so no launch parameter
//!   changes from step to step;
//! - with replay on (`CudaBackend::with_step_graphs`), the device compares
//!   the step's launches with the steps recorded before at the same
//!   `(rows, t)` and replays the one that matches as one unit, or records
//!   this one. Without it the same launches are issued one by one.
//!
//! So a steady decode loop allocates nothing, replayed or not; a new row
//! count (sentences finished) allocates its smaller KV cache, memory and
//! key lengths once.
//!
//! What still changes the launches: a new row count (sentences finished:
//! a new shape, recorded at its first step), a grown KV cache. A beam
//! reorder keeps the cache's buffers in this mode (the backend's
//! `kv_reorder` copies the gathered rows back). Up to [`GRAPHS_PER_SHAPE`]
//! recorded steps are kept per shape, oldest dropped first.

use std::collections::HashMap;
use std::sync::Arc;

use super::device::Device;
use super::runtime::Allocation;
use super::step_graph::{StepEnd, StepGraph};
use super::step_position::StepPosition;
use super::tensor::{DeviceElement, DeviceTensor};
use crate::{Error, Result};

/// Recorded steps kept per `(rows, t)`: room for a grown cache and for
/// callers whose buffers change.
pub const GRAPHS_PER_SHAPE: usize = 4;

/// Counts of decode steps by how they ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Replayed as one unit (a recorded step matched every launch).
    pub replayed: u64,
    /// Ran launch by launch and were recorded for later steps.
    pub recorded: u64,
    /// Ran launch by launch and could not be recorded.
    pub unrecorded: u64,
}

/// The step in progress.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenStep {
    pub(crate) rows: usize,
    pub(crate) t: usize,
    pub(crate) position: usize,
    /// Whether the device matches and replays the step's launches.
    replay: bool,
}

/// Everything the backend keeps for replayable steps.
#[derive(Default)]
pub(crate) struct DecodeSteps {
    pub(crate) open: Option<OpenStep>,
    graphs: HashMap<(usize, usize), Vec<Arc<StepGraph>>>,
    arena: Vec<Arc<Allocation>>,
    next: usize,
    position: Option<StepPosition>,
    self_lengths: Option<DeviceTensor<i32>>,
    pub(crate) stats: StepStats,
}

impl DecodeSteps {
    /// Opens a step of `rows` rows, `t` tokens each at `position ..`, on
    /// fixed buffers, and with `replay` matched against the recorded steps
    /// (only one-token steps; larger `t` runs as usual).
    pub(crate) fn begin(
        &mut self,
        device: &Arc<Device>,
        rows: usize,
        t: usize,
        position: usize,
        replay: bool,
    ) -> Result<()> {
        // A step still open here never ended: an error or a panic (caught
        // by a caller such as the C API) left it. Nothing it computed was
        // returned, so it is dropped.
        self.abort(device);
        if t != 1 || rows == 0 {
            return Ok(());
        }
        // The step's inputs, written before its first launch.
        let len = i32::try_from(position + t).map_err(|_| {
            Error::invalid(
                "decode step",
                format!("position {position} does not fit int32"),
            )
        })?;
        match &mut self.position {
            Some(p) => p.set(position)?,
            slot => *slot = Some(StepPosition::new(device, position)?),
        }
        let lengths = vec![len; rows];
        match &mut self.self_lengths {
            Some(l) if l.numel() == rows => l.copy_from_host(&lengths)?,
            slot => *slot = Some(DeviceTensor::from_host(device, &lengths, &[rows])?),
        }
        self.next = 0;
        if replay {
            let candidates = self.graphs.get(&(rows, t)).cloned().unwrap_or_default();
            device.begin_step(candidates)?;
        }
        self.open = Some(OpenStep {
            rows,
            t,
            position,
            replay,
        });
        Ok(())
    }

    /// Closes the step: counts how it ran and keeps a new recording.
    pub(crate) fn end(&mut self, device: &Arc<Device>) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if !open.replay {
            return Ok(());
        }
        match device.end_step()? {
            StepEnd::Replayed(_) => self.stats.replayed += 1,
            StepEnd::Recorded(Some(graph)) => {
                self.stats.recorded += 1;
                let kept = self.graphs.entry((open.rows, open.t)).or_default();
                if kept.len() == GRAPHS_PER_SHAPE {
                    kept.remove(0);
                }
                kept.push(graph);
            }
            StepEnd::Recorded(None) => self.stats.unrecorded += 1,
        }
        Ok(())
    }

    /// Abandons the step after an error inside it.
    pub(crate) fn abort(&mut self, device: &Arc<Device>) {
        if self.open.take().is_some_and(|o| o.replay) {
            device.abort_step();
        }
    }

    /// The step's position on the device (inside a step).
    pub(crate) fn position(&self) -> Result<&StepPosition> {
        self.position
            .as_ref()
            .ok_or_else(|| Error::invalid("decode step", "no step position"))
    }

    /// The self-attention key lengths of the step (inside a step).
    pub(crate) fn self_lengths(&self) -> Result<&DeviceTensor<i32>> {
        self.self_lengths
            .as_ref()
            .ok_or_else(|| Error::invalid("decode step", "no step key lengths"))
    }

    /// An operation's output of `shape`: the next arena slot inside a step
    /// (its contents are the last step's: every operation writes its whole
    /// output), else a new zeroed tensor.
    pub(crate) fn output<T: DeviceElement>(
        &mut self,
        device: &Arc<Device>,
        shape: &[usize],
    ) -> Result<DeviceTensor<T>> {
        if self.open.is_none() {
            return DeviceTensor::zeros(device, shape);
        }
        let bytes = DeviceTensor::<T>::bytes_for(shape)?;
        let i = self.next;
        self.next += 1;
        // A slot is free when the arena holds its only reference.
        let usable = self
            .arena
            .get(i)
            .is_some_and(|s| Arc::strong_count(s) == 1 && s.bytes() >= bytes);
        if !usable {
            let slot = Arc::new(device.alloc_zeroed(bytes)?);
            if i < self.arena.len() {
                self.arena[i] = slot;
            } else {
                self.arena.push(slot);
            }
        }
        DeviceTensor::in_slot(device, &self.arena[i], shape)
    }
}
