//! Checkpoints read back to the host on the training thread, so that Burn's kernel
//! fusion can stay on.
//!
//! burn-train hands every checkpoint to a thread of its own (`AsyncCheckpointer`), which
//! turns the model's and the optimizer's records into bytes there, and restores them
//! there. With fusion (the GPU backends), a tensor belongs to the stream of the thread
//! that made it, and its last reference decides whether an operation may consume its
//! buffer: when the training thread has moved on and replaced a parameter, the
//! checkpointer's read holds the last reference and frees a buffer the training stream
//! still has queued work for — "Should have handle for tensor" a few iterations after a
//! checkpoint (seen on wgpu with `eval_interval = 2`).
//!
//! So the records that cross to that thread carry host data: [`HostCheckpointed`] (the
//! model) and [`HostOptimizer`] (its optimizer) read their tensors back when burn-train
//! asks for a record, on the training thread and in its stream's order, and turn a
//! restored record back into tensors only when it is loaded, again on the training thread.
//! The checkpointer thread then only serialises bytes. On disk nothing changes: the item
//! is the full-precision one the recorder wrote before.

use burn::module::{
    AutodiffModule, Devices, HasAutodiffModule, Module, ModuleMapper, ModuleVisitor,
};
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, PrecisionSettings, Record};
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use std::marker::PhantomData;

/// A record already read back to the host: the serialisable item of `R`.
pub struct HostRecord<B: Backend, R: Record<B>> {
    item: R::Item<FullPrecisionSettings>,
    backend: PhantomData<B>,
}

impl<B: Backend, R: Record<B>> HostRecord<B, R> {
    /// Reads `record`'s tensors back to the host, on the calling thread.
    pub fn read(record: R) -> Self {
        Self {
            item: record.into_item::<FullPrecisionSettings>(),
            backend: PhantomData,
        }
    }

    /// The record as tensors on `device`, made on the calling thread.
    pub fn into_record(self, device: &B::Device) -> R {
        R::from_item::<FullPrecisionSettings>(self.item, device)
    }
}

// The host data needs no device to be made into an item or from one: every precision
// setting gets the full-precision item (the one the run's recorder writes).
impl<B: Backend, R: Record<B>> Record<B> for HostRecord<B, R>
where
    R::Item<FullPrecisionSettings>: Send,
{
    type Item<S: PrecisionSettings> = R::Item<FullPrecisionSettings>;

    fn into_item<S: PrecisionSettings>(self) -> Self::Item<S> {
        self.item
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, _: &B::Device) -> Self {
        Self {
            item,
            backend: PhantomData,
        }
    }
}

/// A module whose record is a [`HostRecord`]; everything else is the inner module's.
#[derive(Debug, Clone)]
pub struct HostCheckpointed<M>(pub M);

impl<B: Backend, M: Module<B>> Module<B> for HostCheckpointed<M>
where
    <M::Record as Record<B>>::Item<FullPrecisionSettings>: Send,
{
    type Record = HostRecord<B, M::Record>;

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        self.0.collect_devices(devices)
    }

    fn fork(self, device: &B::Device) -> Self {
        Self(self.0.fork(device))
    }

    fn to_device(self, device: &B::Device) -> Self {
        Self(self.0.to_device(device))
    }

    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        self.0.visit(visitor)
    }

    fn map<Mapper: ModuleMapper<B>>(self, mapper: &mut Mapper) -> Self {
        Self(self.0.map(mapper))
    }

    fn load_record(self, record: Self::Record) -> Self {
        let device = self.0.devices().into_iter().next().unwrap_or_default();
        Self(self.0.load_record(record.into_record(&device)))
    }

    fn into_record(self) -> Self::Record {
        HostRecord::read(self.0.into_record())
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> AutodiffModule<B> for HostCheckpointed<M>
where
    <M::Record as Record<B>>::Item<FullPrecisionSettings>: Send,
    <<M::InnerModule as Module<B::InnerBackend>>::Record as Record<B::InnerBackend>>::Item<
        FullPrecisionSettings,
    >: Send,
{
    type InnerModule = HostCheckpointed<M::InnerModule>;

    fn valid(&self) -> Self::InnerModule {
        HostCheckpointed(self.0.valid())
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        Self(M::from_inner(module.0))
    }
}

impl<B: AutodiffBackend, M: HasAutodiffModule<B>> HasAutodiffModule<B> for HostCheckpointed<M>
where
    HostCheckpointed<M::TrainModule>: AutodiffModule<B, InnerModule = Self>,
{
    type TrainModule = HostCheckpointed<M::TrainModule>;
}

impl<M: std::fmt::Display> std::fmt::Display for HostCheckpointed<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<M: TrainStep> TrainStep for HostCheckpointed<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> TrainOutput<Self::Output> {
        self.0.step(item)
    }
}

impl<M: InferenceStep> InferenceStep for HostCheckpointed<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> Self::Output {
        self.0.step(item)
    }
}

/// An optimizer whose record is a [`HostRecord`], made back into tensors on `device`.
#[derive(Clone)]
pub struct HostOptimizer<O, B: Backend> {
    inner: O,
    device: B::Device,
}

impl<O, B: Backend> HostOptimizer<O, B> {
    pub fn new(inner: O, device: &B::Device) -> Self {
        Self {
            inner,
            device: device.clone(),
        }
    }
}

impl<M, B, O> Optimizer<HostCheckpointed<M>, B> for HostOptimizer<O, B>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    HostCheckpointed<M>: AutodiffModule<B>,
    O: Optimizer<M, B>,
    <O::Record as Record<B>>::Item<FullPrecisionSettings>: Send,
{
    type Record = HostRecord<B, O::Record>;

    fn step(
        &mut self,
        lr: LearningRate,
        module: HostCheckpointed<M>,
        grads: GradientsParams,
    ) -> HostCheckpointed<M> {
        HostCheckpointed(self.inner.step(lr, module.0, grads))
    }

    fn step_multi(
        &mut self,
        lr: LearningRate,
        module: HostCheckpointed<M>,
        grads: MultiGradientsParams,
    ) -> HostCheckpointed<M> {
        HostCheckpointed(self.inner.step_multi(lr, module.0, grads))
    }

    fn to_record(&self) -> Self::Record {
        HostRecord::read(self.inner.to_record())
    }

    fn load_record(self, record: Self::Record) -> Self {
        let inner = self.inner.load_record(record.into_record(&self.device));
        Self {
            inner,
            device: self.device,
        }
    }
}
