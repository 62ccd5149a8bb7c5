//! Job execution: BullMQ queues on the cluster's Redis, worker pools, job
//! records and events, and the executors voltd ships (`ssh_import`).
//!
//! | file | what |
//! |---|---|
//! | `names.rs` | the seven queue names, the four concurrency keys |
//! | `queue.rs` | [`queue::JobQueues`]: BullMQ queues (via `bullmq-official`), dispatch validation, counts |
//! | `status.rs` | `jobs:status:<jobId>` records and `team:<teamId>:jobs` |
//! | `events.rs` | typed job status events with the reference's names and fields |
//! | `executor.rs` | **the** [`executor::Executor`] trait (one trait, one file) and the process runner |
//! | `pool.rs` | [`pool::WorkerPool`] per queue, live concurrency, deadlines, cancellation, availability |
//! | `commands.rs` | the job commands' logic as plain async functions |
//! | `engine.rs` | [`engine::Engine`]: queues and pools on a runtime of their own (off the actor thread) |
//! | `actor.rs` | [`actor::JobsActor`]: runs the engine while Redis is there, answers `JobsCall`, sends job events, reports availability |
//! | `ssh_import/` | the `ssh_import` executor: SSH/SFTP → S3, resumable, host keys checked |

pub mod actor;
pub mod commands;
pub mod engine;
pub mod events;
pub mod executor;
pub mod names;
pub mod pool;
pub mod queue;
pub mod ssh_import;
pub mod status;

pub use actor::{ExecutorRegistry, JobsActor, JobsWiring};
pub use executor::{Executor, JobContext, JobError, JobInput};
pub use names::{ConcurrencyKey, QueueName};
pub use pool::{Availability, JobEvent, PoolSettings, Pools, WorkerPool};
pub use queue::{JobQueues, RedisTarget};
