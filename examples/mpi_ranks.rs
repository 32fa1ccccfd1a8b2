//! The loss of a batch spread over MPI processes, each with its own device, equal to one
//! device's: the design torch.distributed users apply, with metric-loss's reference sets.
//!
//! Every process (rank r of P) holds its share of the global batch (uneven shares). Per loss:
//! 1. all-gather every rank's rows and labels: the global batch G, in rank order;
//! 2. `against`: the rank's rows as queries, G as the reference set with the queries at
//!    their place in it (`with_queries_at`), the reference's gradient returned;
//! 3. `metric_loss::ranks::contribution` packs the loss part, the count and dL/dG into one
//!    buffer, summed over the ranks by one all-reduce (a reduce-scatter of the gradient
//!    part would do);
//! 4. `ranks::combine`: the global mean, normalised by the global count (no world-size
//!    factor), and the gradient of the rank's rows (its dL/dQ plus every rank's dL/dG for
//!    them).
//!
//! Every rank also computes the whole batch on its own device and checks the distributed
//! loss and its rows' gradient against it under the tolerance the tests use; the process
//! exits non-zero on a mismatch.
//!
//! Run: `bash run.sh mpi` (installs Open MPI and libclang when missing, runs 2 and 3
//! processes), or `cargo build --release --features mpi,testing --example mpi_ranks` then
//! `mpirun --allow-run-as-root --oversubscribe -np 3 target/release/examples/mpi_ranks`.

use metric_loss::testing::Rng;
use metric_loss::{
    ranks, Contrastive, Embeddings, Gpu, Grads, Labels, LossOutput, Reduction, ReferenceGrad,
    ReferenceSet, Softmax,
};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::traits::*;

/// Rows and width of the global batch.
const ROWS: usize = 301;
const DIM: usize = 12;

/// Uneven shares of `rows` over `ranks`: rank r takes about (r + 1) parts of P(P + 1)/2.
fn shares(rows: usize, ranks: usize) -> Vec<(usize, usize)> {
    let parts = ranks * (ranks + 1) / 2;
    let mut out = Vec::new();
    let mut start = 0;
    for r in 0..ranks {
        let end = if r + 1 == ranks {
            rows
        } else {
            start + rows * (r + 1) / parts
        };
        out.push((start, end - start));
        start = end;
    }
    out
}

/// (loss, terms, dL/dQ, dL/dR) of one call.
fn unpack<C>(o: LossOutput<C>, terms: u64) -> (f64, u64, Vec<f32>, Vec<f32>) {
    let mut grads = o.grads.into_iter().map(|g| g.into_values());
    (o.loss, terms, grads.next().unwrap(), grads.next().unwrap())
}

/// One family's `against` call: (loss, terms, dL/dQ, dL/dR).
type Call<'a> =
    dyn Fn(&Embeddings<'_>, &ReferenceSet<'_, '_>, &Labels) -> (f64, u64, Vec<f32>, Vec<f32>) + 'a;

fn main() {
    let universe = mpi::initialize().expect("MPI initialises");
    let world = universe.world();
    let (rank, ranks) = (world.rank() as usize, world.size() as usize);
    // Each rank's own rows: here cut from one seeded batch, so that each can also compute
    // the whole batch for the check.
    let mut rng = Rng::new(2026);
    let data = rng.normals(ROWS * DIM);
    let ids: Vec<i64> = (0..ROWS).map(|_| rng.below(12) as i64).collect();
    let shares = shares(ROWS, ranks);
    let (first, n) = shares[rank];
    let local = &data[first * DIM..(first + n) * DIM];
    let local_ids = &ids[first..first + n];

    // 1. All-gather rows and labels.
    let counts =
        |per: usize| -> Vec<i32> { shares.iter().map(|&(_, n)| (n * per) as i32).collect() };
    let displs = |c: &[i32]| -> Vec<i32> {
        c.iter()
            .scan(0, |s, &v| {
                let d = *s;
                *s += v;
                Some(d)
            })
            .collect()
    };
    let (rc, lc) = (counts(DIM), counts(1));
    let (rd, ld) = (displs(&rc), displs(&lc));
    let mut global = vec![0.0f32; ROWS * DIM];
    world.all_gather_varcount_into(
        local,
        &mut PartitionMut::new(&mut global[..], &rc[..], &rd[..]),
    );
    let mut global_ids = vec![0i64; ROWS];
    world.all_gather_varcount_into(
        local_ids,
        &mut PartitionMut::new(&mut global_ids[..], &lc[..], &ld[..]),
    );

    let gpu = Gpu::new().expect("a device");
    let q = Embeddings::named("local rows", local, n, DIM).unwrap();
    let g = Embeddings::named("gathered rows", &global, ROWS, DIM).unwrap();
    let set = ReferenceSet::new(&g, ReferenceGrad::Returned).with_queries_at(first);
    let joint = Labels::new(&[local_ids, &global_ids[..]].concat());
    let contrastive = Contrastive::default().margin(2.0).unwrap();
    let supcon = Softmax::supcon();

    let contrastive_call = |q: &Embeddings<'_>, s: &ReferenceSet<'_, '_>, l: &Labels| {
        let o = contrastive.against(&gpu, q, s, l, Grads::Compute).unwrap();
        let t = o.counts.pairs();
        unpack(o, t)
    };
    let supcon_call = |q: &Embeddings<'_>, s: &ReferenceSet<'_, '_>, l: &Labels| {
        let o = supcon.against(&gpu, q, s, l, Grads::Compute).unwrap();
        let t = o.counts.terms;
        unpack(o, t)
    };
    let calls: [(&str, &Call<'_>); 2] =
        [("contrastive", &contrastive_call), ("supcon", &supcon_call)];
    let single_x = Embeddings::named("batch", &data, ROWS, DIM).unwrap();
    let mut failed = false;
    for (name, call) in calls {
        // 2. The rank's queries against the gathered batch.
        let (loss, terms, dq, dr) = call(&q, &set, &joint);
        let part = ranks::contribution(Reduction::Mean, loss, terms, &dr).unwrap();
        let mut summed = vec![0.0f64; part.len()];
        world.all_reduce_into(&part[..], &mut summed[..], SystemOperation::sum());
        let (global_loss, grad) =
            ranks::combine(Reduction::Mean, &summed, terms, &dq, first, DIM).unwrap();
        let me = ReferenceSet::new(&single_x, ReferenceGrad::Returned).with_queries_at(0);
        let both = Labels::new(&[&ids[..], &ids[..]].concat());
        let (want, _, wq, wr) = call(&single_x, &me, &both);
        let want_grad: Vec<f64> = wq
            .iter()
            .zip(&wr)
            .map(|(&a, &b)| f64::from(a) + f64::from(b))
            .skip(first * DIM)
            .take(n * DIM)
            .collect();
        let largest = want_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let loss_ok = (global_loss - want).abs() <= 1e-5 * want.abs().max(1.0);
        let grad_err = grad
            .iter()
            .zip(&want_grad)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        let grad_ok = grad_err <= 1e-5 * largest.max(1e-30);
        failed |= !(loss_ok && grad_ok);
        println!(
            "rank {rank}/{ranks} rows {first}..{} {name}: loss {global_loss:.9} (one device {want:.9}), \
             gradient's largest difference {grad_err:.2e} of {largest:.2e} {}",
            first + n,
            if loss_ok && grad_ok { "ok" } else { "MISMATCH" }
        );
    }
    if failed {
        std::process::exit(1);
    }
}
