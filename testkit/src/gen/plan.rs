//! Which blocks to write and on which nodes: block ids and generation
//! stamps per pool, sizes, and the replicas' nodes, all from the seed.

use super::random::Rng;
use super::{GenBlock, GenSpec, Generated, FIRST_BLOCK_ID, FIRST_GENSTAMP};

/// Blocks to write: `replicas` holds `per_block` node indexes per block.
pub(super) struct Plan {
    pub(super) blocks: Vec<GenBlock>,
    pub(super) replicas: Vec<u32>,
    pub(super) per_block: usize,
}

/// Next block id and generation stamp of every pool.
pub(super) struct IdAllocator {
    next: Vec<(u64, u64)>,
}

impl IdAllocator {
    pub(super) fn fresh(pools: usize, rng: &mut Rng) -> Self {
        Self {
            next: (0..pools)
                .map(|_| (FIRST_BLOCK_ID + rng.below(4096), FIRST_GENSTAMP))
                .collect(),
        }
    }

    /// Continues above every block, finalized or not, already in `generated`.
    pub(super) fn after(generated: &Generated, rng: &mut Rng) -> Self {
        let mut max = vec![(FIRST_BLOCK_ID, FIRST_GENSTAMP); generated.pools.len()];
        let rbw = generated.nodes.iter().flat_map(|n| n.rbw.iter());
        for b in generated.blocks.iter().chain(rbw) {
            let m = &mut max[b.pool as usize];
            *m = (m.0.max(b.id), m.1.max(b.genstamp));
        }
        Self {
            next: max
                .into_iter()
                .map(|(id, gs)| (id + 1 + rng.below(2048), gs + 1))
                .collect(),
        }
    }

    fn take(&mut self, pool: usize, rng: &mut Rng) -> (u64, u64) {
        let (id, gs) = self.next[pool];
        // Mostly consecutive ids (the blocks of one file), else a jump: many
        // subdirs get used, some hold several blocks.
        let id_step = if rng.below(10) < 7 { 1 } else { 1 + rng.below(2048) };
        // Appends and recoveries bump the stamp now and then.
        let gs_step = if rng.below(16) == 0 { 1 + rng.below(4) } else { 1 };
        self.next[pool] = (id + id_step, gs + gs_step);
        (id, gs)
    }
}

/// A block size in `min..=max`: a few empty ones, some multiples of 512.
fn pick_size(rng: &mut Rng, min: u64, max: u64) -> u64 {
    let roll = rng.below(100);
    if roll == 0 && min == 0 {
        return 0;
    }
    if roll < 11 {
        let lo = min.div_ceil(512).max(1) * 512;
        let hi = max / 512 * 512;
        if lo <= hi {
            return lo + 512 * rng.below((hi - lo) / 512 + 1);
        }
    }
    let lo = min.max(1).min(max);
    lo + rng.below(max - lo + 1)
}

pub(super) fn next_block(spec: &GenSpec, alloc: &mut IdAllocator, rng: &mut Rng) -> GenBlock {
    let pool = rng.below(alloc.next.len() as u64) as usize;
    let (id, genstamp) = alloc.take(pool, rng);
    GenBlock {
        pool: pool as u32,
        id,
        genstamp,
        len: pick_size(rng, spec.min_size, spec.max_size),
    }
}

pub(super) fn plan_blocks(spec: &GenSpec, nodes: usize, count: usize, alloc: &mut IdAllocator, rng: &mut Rng) -> Plan {
    let per_block = spec.replication.min(nodes);
    let mut plan = Plan {
        blocks: Vec::with_capacity(count),
        replicas: Vec::with_capacity(count * per_block),
        per_block,
    };
    let mut order: Vec<u32> = (0..nodes as u32).collect();
    for _ in 0..count {
        plan.blocks.push(next_block(spec, alloc, rng));
        // A partial Fisher-Yates shuffle picks distinct nodes.
        for j in 0..per_block {
            let k = j + rng.below((nodes - j) as u64) as usize;
            order.swap(j, k);
        }
        let start = plan.replicas.len();
        plan.replicas.extend_from_slice(&order[..per_block]);
        plan.replicas[start..].sort_unstable();
    }
    plan
}

/// Adds the planned blocks to `generated`'s lists and totals.
pub(super) fn record_plan(generated: &mut Generated, plan: &Plan) {
    let first = generated.blocks.len() as u32;
    generated.blocks.extend_from_slice(&plan.blocks);
    for (k, nodes) in plan.replicas.chunks(plan.per_block.max(1)).enumerate() {
        for &n in nodes {
            generated.nodes[n as usize].blocks.push(first + k as u32);
        }
    }
    generated.normalize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_include_empty_and_whole_chunks() {
        let mut rng = Rng::new(3);
        let sizes: Vec<u64> = (0..10_000).map(|_| pick_size(&mut rng, 0, 256 << 10)).collect();
        assert!(sizes.iter().all(|&s| s <= 256 << 10));
        assert!(sizes.contains(&0));
        assert!(sizes.iter().filter(|&&s| s > 0 && s % 512 == 0).count() > 500);
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| (1024..=2048).contains(&pick_size(&mut rng, 1024, 2048))));
        assert_eq!(pick_size(&mut rng, 0, 0), 0);
        assert_eq!(pick_size(&mut rng, 7, 7), 7);
    }
}
