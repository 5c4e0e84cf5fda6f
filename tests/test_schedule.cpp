// Schedule steps (apply, print, JSON round trip) and lowering, checked by interpreting the
// lowered loop nest against a direct evaluation of the tensor expression.
#include <catch2/catch.hpp>

#include "ktune/ir/printer.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/error.h"
#include "ktune/te/kernel.h"
#include "support/dags.h"

using namespace ktune;
using namespace ktune::schedule;
using namespace ktune::testing;

namespace {
State tiled_matmul(std::shared_ptr<const te::ComputeDAG> dag, std::vector<int64_t> li, std::vector<int64_t> lj,
                   std::vector<int64_t> lk) {
  State st(dag);
  // C: i, j, k -> split from the last root loop so positions stay put.
  st.apply(SplitStep{0, 2, lk});
  st.apply(SplitStep{0, 1, lj});
  st.apply(SplitStep{0, 0, li});
  return st;
}
}  // namespace

TEST_CASE("naive schedules lower to the tensor expression's values", "[lower]") {
  CHECK(check_lowering(State(matmul_dag(7, 5, 3))) < 1e-5);
  CHECK(check_lowering(State(dense_relu_dag(6, 10, 4))) < 1e-5);
  CHECK(check_lowering(State(conv1d_dag(3, 9, 4, 3, 1))) < 1e-5);
  CHECK(check_lowering(State(softmax_dag(4, 11))) < 1e-5);
}

TEST_CASE("multi-level tiling with SSRSRS order, parallel, vectorize, unroll", "[lower]") {
  auto dag = matmul_dag(16, 32, 8);
  State st = tiled_matmul(dag, {2, 4}, {2, 8}, {4});
  // leaf: i.0 i.1 i.2 j.0 j.1 j.2 k.0 k.1 -> i.0 j.0 i.1 j.1 k.0 i.2 k.1 j.2
  st.apply(ReorderStep{0, {0, 3, 1, 4, 6, 2, 7, 5}});
  st.apply(FuseStep{0, {0, 1}});
  st.apply(AnnotateStep{0, 0, Annotation::Parallel});
  st.apply(AnnotateStep{0, 6, Annotation::Vectorize});
  st.apply(PragmaStep{0, 0, "auto_unroll_max_step", 64});
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  CHECK(text.find("parallel") != std::string::npos);
  CHECK(text.find("vectorized") != std::string::npos);
}

TEST_CASE("splits that do not divide the extent are guarded", "[lower]") {
  auto dag = matmul_dag(13, 11, 7);
  State st = tiled_matmul(dag, {4}, {2, 3}, {5});
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  CHECK(text.find("if") != std::string::npos);
}

TEST_CASE("cache_write with the cache stage computed at the output tile", "[lower]") {
  for (int64_t n : {16, 13}) {
    auto dag = matmul_dag(n, n, 6);
    State st(dag);
    st.apply(CacheWriteStep{0, ir::MemoryScope::Local});
    REQUIRE(st.num_stages() == 2);
    CHECK(st.stage(0).op.name == "C.local");
    // Tile the copy stage C (stage 1): i, j -> i.0 j.0 i.1 j.1
    st.apply(SplitStep{1, 1, {4}});
    st.apply(SplitStep{1, 0, {4}});
    st.apply(ReorderStep{1, {0, 2, 1, 3}});
    st.apply(ComputeAtStep{0, 1, 1});
    // Tile the cache stage too: its region is 4x4.
    st.apply(SplitStep{0, 2, {3}});
    st.apply(AnnotateStep{0, 1, Annotation::Vectorize});
    CHECK(check_lowering(st) < 1e-5);
    const std::string text = ir::to_string(lower(st, "k").body);
    CHECK(text.find("local") != std::string::npos);
  }
}

TEST_CASE("cache_read packs the panel a loop reads", "[lower]") {
  for (int64_t n : {16, 13}) {
    auto dag = matmul_dag(n, n, 12);
    State st(dag);
    st.apply(CacheReadStep{"B", ir::MemoryScope::Local, {0}});
    REQUIRE(st.num_stages() == 2);
    CHECK(st.stage(0).op.name == "B.local");
    // C (stage 1): i, j, k -> j.0 i k.0 j.1 k.1 ; B.local at k.0: a 4 x 4 panel.
    st.apply(SplitStep{1, 2, {4}});
    st.apply(SplitStep{1, 1, {4}});
    st.apply(ReorderStep{1, {1, 0, 3, 2, 4}});
    st.apply(ComputeAtStep{0, 1, 2});
    CHECK(check_lowering(st) < 1e-5);
    CHECK_THAT(st.steps_text(), Catch::Contains("cache_read(B, local, [C])"));
    const std::string text = ir::to_string(lower(st, "k").body);
    CHECK(text.find("allocate B.local[f32 * 16] local") != std::string::npos);
  }
}

TEST_CASE("fusion: a reduction computed at its element-wise consumer", "[lower]") {
  auto dag = dense_relu_dag(12, 16, 5);
  State st(dag);
  st.apply(SplitStep{1, 1, {8}});
  st.apply(SplitStep{1, 0, {3}});
  st.apply(ReorderStep{1, {0, 2, 1, 3}});
  st.apply(ComputeAtStep{0, 1, 1});
  st.apply(SplitStep{0, 2, {5}});
  CHECK(check_lowering(st) < 1e-5);
}

TEST_CASE("padding stage inlined, at root, or computed inside the convolution", "[lower]") {
  auto dag = conv1d_dag(3, 10, 4, 3, 1);
  {
    State st(dag);
    st.apply(ComputeInlineStep{0});
    CHECK(check_lowering(st) < 1e-5);
  }
  {
    State st(dag);  // O: k, q, c, s
    st.apply(SplitStep{1, 1, {4}});  // q(10) -> 3 x 4, not exact
    st.apply(ComputeAtStep{0, 1, 1});
    CHECK(check_lowering(st) < 1e-5);
  }
  {
    State st(dag);
    st.apply(ComputeAtStep{0, 1, 2});  // inside the reduction loop c
    CHECK(check_lowering(st) < 1e-5);
  }
}

TEST_CASE("softmax with inlined exp", "[lower]") {
  auto dag = softmax_dag(5, 9);
  State st(dag);
  st.apply(ComputeInlineStep{1});
  st.apply(SplitStep{3, 1, {3}});
  st.apply(AnnotateStep{3, 2, Annotation::Vectorize});
  CHECK(check_lowering(st) < 1e-5);
}

TEST_CASE("invalid steps are rejected with a message naming the step", "[steps]") {
  auto dag = matmul_dag(8, 8, 8);
  State st(dag);
  auto msg = [&](const Step& s) {
    State copy = st;
    try {
      copy.apply(s);
    } catch (const InvalidCandidate& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK_THAT(msg(SplitStep{0, 0, {0}}), Catch::Contains("split") && Catch::Contains("not positive"));
  CHECK_THAT(msg(SplitStep{0, 0, {16}}), Catch::Contains("more than the extent"));
  CHECK_THAT(msg(SplitStep{3, 0, {2}}), Catch::Contains("stage 3 does not exist"));
  CHECK_THAT(msg(SplitStep{0, 5, {2}}), Catch::Contains("no loop at position 5"));
  CHECK_THAT(msg(FuseStep{0, {1, 2}}), Catch::Contains("spatial loop with a reduction"));
  CHECK_THAT(msg(ReorderStep{0, {0, 0, 1}}), Catch::Contains("permutation"));
  CHECK_THAT(msg(AnnotateStep{0, 2, Annotation::Parallel}), Catch::Contains("reduction loop"));
  CHECK_THAT(msg(ComputeInlineStep{0}), Catch::Contains("output"));
  CHECK_THAT(msg(PragmaStep{0, 0, "bogus", 1}), Catch::Contains("unknown pragma"));
}

TEST_CASE("every step kind round-trips through JSON", "[steps]") {
  std::vector<Step> steps = {
      SplitStep{1, 2, {4, 8}},       FuseStep{0, {1, 2, 3}},   ReorderStep{2, {2, 0, 1}},
      AnnotateStep{0, 1, Annotation::Vectorize}, AnnotateStep{0, 0, Annotation::ThreadIdxX},
      PragmaStep{0, 0, "auto_unroll_max_step", 64}, ComputeAtStep{0, 1, 3}, ComputeInlineStep{2},
      ComputeRootStep{1},            CacheWriteStep{0, ir::MemoryScope::Local},
      CacheWriteStep{1, ir::MemoryScope::Shared}, CacheReadStep{"B", ir::MemoryScope::Local, {1, 2}}};
  const auto j = steps_to_json(steps);
  const auto back = steps_from_json(nlohmann::json::parse(j.dump()));
  REQUIRE(back.size() == steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    CHECK(back[i].key() == steps[i].key());
    CHECK(back[i].kind() == steps[i].kind());
  }
  CHECK(canonical_key(back) == canonical_key(steps));
}

TEST_CASE("malformed JSON steps are user errors", "[steps]") {
  using nlohmann::json;
  CHECK_THROWS_WITH(steps_from_json(json::parse(R"([{"kind":"twist","stage":0}])")),
                    Catch::Contains("step 0") && Catch::Contains("unknown step kind 'twist'"));
  CHECK_THROWS_WITH(steps_from_json(json::parse(R"([{"kind":"split","stage":0}])")),
                    Catch::Contains("missing the field 'iter'"));
  CHECK_THROWS_WITH(steps_from_json(json::parse(R"([{"kind":"annotate","stage":0,"iter":0,"annotation":"fast"}])")),
                    Catch::Contains("unknown annotation 'fast'"));
}

TEST_CASE("replay reproduces a state and printing names the loops", "[steps]") {
  auto dag = matmul_dag(16, 16, 16);
  State st = tiled_matmul(dag, {4}, {4}, {4});
  st.apply(FuseStep{0, {0, 1}});
  State again = replay(dag, steps_from_json(steps_to_json(st.steps())));
  CHECK(again.to_string() == st.to_string());
  CHECK_THAT(st.steps_text(), Catch::Contains("split(C, r0, [4])") && Catch::Contains("fuse(C, [i.0, i.1])"));
  CHECK(ir::to_string(lower(again, "k").body) == ir::to_string(lower(st, "k").body));
}

// ---------------------------------------------------------------------------------------
// follow_split, follow_fused_split, rfactor, storage_align

namespace {
// Ansor-style fusion of dense+relu: D tiled i -> [.., a, b], j -> [.., c, d]; Y follows the
// outer two levels of both splits and D is computed at Y's level-2 tile.
State fused_dense_relu(std::shared_ptr<const te::ComputeDAG> dag, int n_split) {
  State st(dag);                                     // D: i j k ; Y: i j
  st.apply(SplitStep{0, 0, {2, 3}});                 // 0: D i.0 i.1 i.2 j k
  st.apply(SplitStep{0, 3, {4, 2}});                 // 1: D i.0 i.1 i.2 j.0 j.1 j.2 k
  st.apply(ReorderStep{0, {0, 3, 1, 4, 6, 2, 5}});   // 2: D i.0 j.0 i.1 j.1 k i.2 j.2
  st.apply(FollowSplitStep{1, 0, 0, n_split});       // 3: Y i.0 .. j
  st.apply(FollowSplitStep{1, n_split + 1, 1, n_split});  // 4: Y i.0 .. j.0 ..
  return st;
}
}  // namespace

TEST_CASE("follow_split: a consumer follows its producer's tiling", "[lower][follow]") {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 16}, {13, 11}}) {
    auto dag = dense_relu_dag(m, n, 5);
    State st = fused_dense_relu(dag, 2);
    // Y: i.0 i.1 i.2 j.0 j.1 j.2 -> i.0 j.0 i.1 j.1 i.2 j.2; D at j.1.
    // D's leaf: i.0 j.0 i.1 j.1 k i.2 j.2 after its reorder.
    for (auto [y, d] : {std::pair{0, 0}, {1, 2}, {2, 5}, {3, 1}, {4, 3}, {5, 6}})
      CHECK(st.stage(1).leaf_iter(y).extent == st.stage(0).leaf_iter(d).extent);
    CHECK(st.stage(1).leaf_iter(1).extent == 2);
    CHECK(st.stage(1).leaf_iter(2).extent == 3);
    CHECK(st.stage(1).leaf_iter(5).extent == 2);
    st.apply(ReorderStep{1, {0, 3, 1, 4, 2, 5}});
    st.apply(ComputeAtStep{0, 1, 3});
    CHECK(check_lowering(st) < 1e-5);
    CHECK_THAT(st.steps_text(), Catch::Contains("follow_split(Y, i, step 0, n_split=2)"));
  }
  // n_split = 1: one loop of the product of the lengths; n_split = 3: a trailing loop of 1.
  for (int n_split : {1, 3}) {
    auto dag = dense_relu_dag(13, 11, 4);
    State st = fused_dense_relu(dag, n_split);
    const Stage& y = st.stage(1);
    REQUIRE(int(y.leaf.size()) == 2 * (n_split + 1));
    CHECK(y.leaf_iter(n_split).extent == (n_split == 1 ? 6 : 1));
    st.apply(ComputeAtStep{0, 1, 0});
    CHECK(check_lowering(st) < 1e-5);
  }
}

TEST_CASE("follow steps may split a loop by more than its extent", "[lower][follow]") {
  auto dag = matmul_dag(4, 40, 3);
  State st(dag);
  st.apply(SplitStep{0, 1, {8, 4}});              // 0: C i j.0 (2) j.1 (8) j.2 (4) k
  st.apply(FollowSplitStep{0, 0, 0, 2});          // i (4) -> 1 x 8 x 4, guarded
  CHECK(st.stage(0).leaf_iter(0).extent == 1);
  CHECK(st.stage(0).leaf_iter(2).extent == 4);
  st.apply(FollowFusedSplitStep{0, 6, {0}, 0, true});  // k (3) -> 1 x 8
  CHECK(st.stage(0).leaf_iter(7).extent == 8);
  st.apply(AnnotateStep{0, 5, Annotation::Vectorize});
  CHECK(check_lowering(st) < 1e-5);
  // A plain split still refuses.
  CHECK_THROWS_WITH(State(dag).apply(SplitStep{0, 0, {8}}), Catch::Contains("more than the extent"));
}

TEST_CASE("follow_fused_split splits a fused loop by a product of split lengths", "[lower][follow]") {
  for (bool factor : {true, false}) {
    auto dag = dense_relu_dag(13, 11, 4);
    State st(dag);
    st.apply(SplitStep{0, 0, {2, 4}});  // 0
    st.apply(SplitStep{0, 3, {4, 2}});  // 1
    st.apply(FuseStep{1, {0, 1}});      // 2: Y i@j (143)
    st.apply(FollowFusedSplitStep{1, 0, {0, 1}, 0, factor});  // by 2 * 4 = 8
    const Stage& y = st.stage(1);
    REQUIRE(y.leaf.size() == 2);
    if (factor) {
      CHECK(y.leaf_iter(0).extent == 18);
      CHECK(y.leaf_iter(1).extent == 8);
    } else {
      CHECK(y.leaf_iter(0).extent == 8);  // ceil(143 / 18) = 8 parts of 18
      CHECK(y.leaf_iter(1).extent == 18);
    }
    st.apply(AnnotateStep{1, 1, Annotation::Vectorize});
    CHECK(check_lowering(st) < 1e-5);
    CHECK_THAT(st.steps_text(), Catch::Contains("follow_fused_split(Y, i@j, steps [0, 1], level=0, "));
  }
}

TEST_CASE("rfactor: a split reduction loop becomes a spatial axis of NAME.rf", "[lower][rfactor]") {
  SECTION("matmul, inner and outer part, guarded tail") {
    for (int which : {0, 1}) {
      for (int factor_pos : {0, 2}) {
        auto dag = matmul_dag(8, 6, 30);
        State st(dag);
        st.apply(SplitStep{0, 2, {4}});  // C: i j k.0 (8) k.1 (4): 32 covers 30
        st.apply(RfactorStep{0, 2 + which, factor_pos});
        REQUIRE(st.num_stages() == 2);
        const Stage& rf = st.stage(0);
        CHECK(rf.op.name == "C.rf");
        CHECK(rf.op.shape[factor_pos] == (which ? 4 : 8));
        CHECK(rf.op.reduce_axes.size() == 1);
        CHECK(st.stage(1).op.name == "C");
        CHECK(st.stage(1).op.reduce_axes.size() == 1);
        CHECK(st.stage(1).leaf.size() == 3);
        CHECK(check_lowering(st) < 1e-5);
        // Parallel over the factored axis of the rf stage; the final reduction vectorized.
        st.apply(AnnotateStep{0, factor_pos, Annotation::Parallel});
        st.apply(SplitStep{1, 1, {3}});
        st.apply(ReorderStep{1, {0, 1, 3, 2}});
        st.apply(AnnotateStep{1, 3, Annotation::Vectorize});
        CHECK(check_lowering(st) < 1e-5);
        CHECK_THAT(st.steps_text(), Catch::Contains(which ? "rfactor(C, r0.1, factor_iter_id=" : "rfactor(C, r0.0, "));
      }
    }
  }
  SECTION("fused reduction loops of a convolution, rf stage computed at the consumer") {
    auto dag = conv1d_dag(3, 10, 4, 3, 1);  // Ipad, O: k q c s
    State st(dag);
    st.apply(ComputeInlineStep{0});
    st.apply(FuseStep{1, {2, 3}});       // O: k q c@s (9)
    st.apply(SplitStep{1, 2, {2}});      // O: k q (c@s).0 (5) (c@s).1 (2)
    st.apply(RfactorStep{1, 3, 1});      // O.rf: k, (c@s).1, q; reduce (c@s).0
    REQUIRE(st.num_stages() == 3);
    CHECK(st.stage(1).op.name == "O.rf");
    CHECK(st.stage(1).op.shape == std::vector<int64_t>{4, 2, 10});
    CHECK(check_lowering(st) < 1e-5);
    st.apply(ComputeAtStep{1, 2, 1});    // O.rf at O's q loop
    CHECK(check_lowering(st) < 1e-5);
  }
  SECTION("max reduction with a masked tail, then the stage indices of later stages") {
    auto dag = softmax_dag(5, 9);  // mx e sm Y
    State st(dag);
    st.apply(SplitStep{0, 1, {4}});  // mx: i r0.0 (3) r0.1 (4): 12 covers 9
    st.apply(RfactorStep{0, 2, 1});
    REQUIRE(st.num_stages() == 5);
    CHECK(st.stage(0).op.name == "mx.rf");
    CHECK(st.stage(2).op.name == "e");
    st.apply(ComputeInlineStep{2});
    st.apply(RfactorStep{3, 1, 0});  // sm: unsplit: sm.rf is element-wise
    CHECK(st.stage(3).op.name == "sm.rf");
    CHECK(st.stage(3).op.reduce == te::ReduceKind::None);
    CHECK(check_lowering(st) < 1e-5);
  }
}

TEST_CASE("storage_align pads the strides of a stage's buffer", "[lower][storage_align]") {
  SECTION("root intermediate") {
    auto dag = dense_relu_dag(12, 16, 5);
    State st(dag);
    st.apply(StorageAlignStep{0, 0, 8, 1});  // stride of D's rows: 16 -> 17
    CHECK(check_lowering(st) < 1e-5);
    const std::string text = ir::to_string(lower(st, "k").body);
    INFO(text);
    CHECK(text.find("allocate D[f32 * 203]") != std::string::npos);  // 11 * 17 + 15 + 1
    CHECK_THAT(st.steps_text(), Catch::Contains("storage_align(D, i, 8, 1)"));
    CHECK_THAT(st.to_string(), Catch::Contains("storage_align(dim 0, 8, 1)"));
  }
  SECTION("innermost dimension and a cache tile computed at the output tile") {
    for (int64_t n : {16, 13}) {
      auto dag = matmul_dag(n, n, 6);
      State st(dag);
      st.apply(CacheWriteStep{0, ir::MemoryScope::Local});
      st.apply(StorageAlignStep{0, 0, 16, 1});  // region rows: 4 -> 17
      st.apply(StorageAlignStep{0, 1, 2, 0});   // columns: 1 -> 2
      st.apply(SplitStep{1, 1, {4}});
      st.apply(SplitStep{1, 0, {4}});
      st.apply(ReorderStep{1, {0, 2, 1, 3}});
      st.apply(ComputeAtStep{0, 1, 1});
      st.apply(AnnotateStep{0, 1, Annotation::Vectorize});
      CHECK(check_lowering(st) < 1e-5);
      const std::string text = ir::to_string(lower(st, "k").body);
      INFO(text);
      CHECK(text.find("allocate C.local[f32 * 58]") != std::string::npos);  // 3*17 + 3*2 + 1
    }
  }
}

TEST_CASE("invalid follow_split, follow_fused_split, rfactor, storage_align are rejected", "[steps]") {
  auto dag = dense_relu_dag(8, 8, 8);
  State st(dag);
  st.apply(SplitStep{0, 0, {2, 2}});  // 0
  st.apply(FuseStep{1, {0, 1}});      // 1
  auto msg = [&](const Step& s) {
    State copy = st;
    try {
      copy.apply(s);
    } catch (const InvalidCandidate& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK_THAT(msg(FollowSplitStep{1, 0, 1, 1}), Catch::Contains("follow_split") && Catch::Contains("is a fuse, not a split"));
  CHECK_THAT(msg(FollowSplitStep{1, 0, 5, 1}), Catch::Contains("follow_split") && Catch::Contains("step 5 does not exist"));
  CHECK_THAT(msg(FollowSplitStep{1, 0, 0, 4}), Catch::Contains("follow_split") && Catch::Contains("n_split 4 is not in 1..3"));
  CHECK_THAT(msg(FollowSplitStep{1, 3, 0, 1}), Catch::Contains("follow_split") && Catch::Contains("no loop at position 3"));
  CHECK_THAT(msg(FollowFusedSplitStep{1, 0, {0}, 2, true}),
             Catch::Contains("follow_fused_split") && Catch::Contains("level 2 is not in 0..1"));
  CHECK_THAT(msg(FollowFusedSplitStep{1, 0, {0, 1}, 0, true}),
             Catch::Contains("follow_fused_split") && Catch::Contains("is a fuse, not a split"));
  CHECK_THAT(msg(FollowFusedSplitStep{1, 0, {}, 0, true}), Catch::Contains("follow_fused_split") && Catch::Contains("no source steps"));
  CHECK_THAT(msg(RfactorStep{0, 0, 0}), Catch::Contains("rfactor") && Catch::Contains("spatial loop, not a reduction loop"));
  CHECK_THAT(msg(RfactorStep{0, 4, 3}), Catch::Contains("rfactor") && Catch::Contains("factor_iter_id 3 is not in 0..2"));
  CHECK_THAT(msg(StorageAlignStep{0, 3, 0, 0}), Catch::Contains("storage_align") && Catch::Contains("factor 0 is not positive"));
  CHECK_THAT(msg(StorageAlignStep{0, 3, 4, 4}), Catch::Contains("storage_align") && Catch::Contains("offset 4 is not in 0..3"));
  CHECK_THAT(msg(StorageAlignStep{0, 3, int64_t(1) << 40, 0}), Catch::Contains("storage_align") && Catch::Contains("larger than"));
  CHECK_THAT(msg(SplitStep{0, 0, {int64_t(1) << 62, 4}}), Catch::Contains("more than the extent"));
  CHECK_THAT(msg(StorageAlignStep{0, 0, 4, 0}), Catch::Contains("storage_align") && Catch::Contains("not a spatial axis"));
  CHECK_THAT(msg(StorageAlignStep{0, 4, 4, 0}), Catch::Contains("storage_align") && Catch::Contains("not a spatial axis"));
  CHECK_THROWS_WITH(State(dag).apply(StorageAlignStep{1, 0, 4, 0}),
                    Catch::Contains("storage_align") && Catch::Contains("output"));
  {
    State twice = st;
    twice.apply(RfactorStep{0, 4, 0});
    CHECK_THROWS_WITH(twice.apply(RfactorStep{1, 2, 0}), Catch::Contains("rfactor") && Catch::Contains("D.rf exists already"));
  }
  {
    State at = st;
    at.apply(ComputeAtStep{0, 1, 0});
    CHECK_THROWS_WITH(at.apply(RfactorStep{0, 4, 0}), Catch::Contains("rfactor") && Catch::Contains("at root"));
  }
  // A replayed list names the failing step.
  CHECK_THROWS_WITH(replay(dag, {SplitStep{0, 0, {2}}, FollowSplitStep{1, 0, 0, 7}}),
                    Catch::Contains("step 1 (follow_split)"));
}

TEST_CASE("the new steps round-trip through JSON and replay", "[steps]") {
  std::vector<Step> steps = {FollowSplitStep{1, 0, 3, 2}, FollowFusedSplitStep{2, 1, {0, 4}, 1, false},
                             RfactorStep{0, 3, 1}, StorageAlignStep{1, 0, 32, 8}};
  const auto back = steps_from_json(nlohmann::json::parse(steps_to_json(steps).dump()));
  REQUIRE(back.size() == steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    CHECK(back[i].key() == steps[i].key());
    CHECK(back[i].kind() == steps[i].kind());
  }
  CHECK(steps[1].to_json().at("factor_or_nparts") == false);
  CHECK_THROWS_WITH(steps_from_json(nlohmann::json::parse(R"([{"kind":"rfactor","stage":0,"iter":1}])")),
                    Catch::Contains("missing the field 'factor_iter_id'"));

  auto dag = dense_relu_dag(13, 11, 9);
  State st = fused_dense_relu(dag, 2);
  st.apply(ReorderStep{1, {0, 3, 1, 4, 2, 5}});
  st.apply(ComputeAtStep{0, 1, 3});
  st.apply(SplitStep{0, 4, {3}});  // D's k
  State again = replay(dag, steps_from_json(steps_to_json(st.steps())));
  CHECK(again.to_string() == st.to_string());
  CHECK(ir::to_string(lower(again, "k").body) == ir::to_string(lower(st, "k").body));
  State r(dag);
  r.apply(SplitStep{0, 2, {3}});
  r.apply(RfactorStep{0, 3, 2});
  r.apply(StorageAlignStep{0, 0, 4, 3});
  State r2 = replay(dag, steps_from_json(steps_to_json(r.steps())));
  CHECK(r2.to_string() == r.to_string());
  CHECK(ir::to_string(lower(r2, "k").body) == ir::to_string(lower(r, "k").body));
  CHECK(check_lowering(r2) < 1e-5);
}

// Found by the differential fuzzer (fuzz_codegen, kernels rand_5050 and rand_5062): the
// region of a stage computed at a loop was inferred from its attach target's reads only;
// another stage computed in the same loop that reads it then read outside the buffer.
TEST_CASE("a stage computed at a loop covers the reads of the other stages computed there", "[lower][regression]") {
  using ir::Expr;
  auto dag = std::make_shared<te::ComputeDAG>();
  dag->kernel = "shared_producer";
  dag->ops.push_back(placeholder("A", {3, 16}));
  dag->ops.push_back(compute("P", {7, 16}, [](auto& a, auto&) { return rd("A", {a[0] % Expr(3), a[1]}) * Expr(2.0f); }));
  dag->ops.push_back(compute(
      "Q", {7, 7}, [](auto& a, auto& r) { return -rd("P", {a[0], a[1] * Expr(2) + r[0]}); }, {4}, te::ReduceKind::Min));
  dag->ops.push_back(compute(
      "Y", {4, 11},
      [](auto& a, auto&) {
        return ir::select(a[1] >= Expr(2) && a[1] < Expr(9), rd("Q", {a[0] * Expr(2), a[1] - Expr(2)}),
                          ir::make_zero(ir::Type::f32())) *
               rd("P", {a[1] % Expr(7), a[0] + Expr(3)});
      },
      {}, te::ReduceKind::None, true));
  SECTION("both at the same loop") {
    State st(dag);
    st.apply(ComputeAtStep{1, 2, 0});
    st.apply(ComputeAtStep{0, 2, 0});
    CHECK(check_lowering(st) < 1e-5);
  }
  SECTION("the reader deeper than the producer") {
    State st(dag);
    st.apply(SplitStep{2, 1, {4}});  // Y: i j.0 j.1
    st.apply(ComputeAtStep{1, 2, 1});
    st.apply(ComputeAtStep{0, 2, 0});
    CHECK(check_lowering(st) < 1e-5);
  }
  SECTION("the reader outside the producer's loop is rejected") {
    State st(dag);
    st.apply(ComputeAtStep{1, 2, 0});
    st.apply(ComputeAtStep{0, 2, 1});
    CHECK_THROWS_WITH(lower(st, "k"), Catch::Contains("Q reads P but is computed before it"));
  }
  SECTION("a reader nested in another attached stage") {
    auto d2 = std::make_shared<te::ComputeDAG>();
    d2->kernel = "nested_reader";
    d2->ops.push_back(placeholder("A", {8}));
    d2->ops.push_back(compute("P", {8}, [](auto& a, auto&) { return rd("A", {a[0]}) * Expr(2.0f); }));
    d2->ops.push_back(compute("R", {8}, [](auto& a, auto&) { return rd("P", {Expr(7) - a[0]}) + Expr(1.0f); }));
    d2->ops.push_back(compute("Q", {8}, [](auto& a, auto&) { return rd("R", {a[0]}) * rd("P", {a[0]}); }));
    d2->ops.push_back(compute("Y", {8}, [](auto& a, auto&) { return rd("Q", {a[0]}) + rd("P", {a[0]}); }, {},
                              te::ReduceKind::None, true));
    State st(d2);
    st.apply(SplitStep{3, 0, {4}});     // Y: i.0 i.1
    st.apply(ComputeAtStep{2, 3, 0});   // Q at Y.i.0
    st.apply(ComputeAtStep{1, 2, 0});   // R at Q.i (inside Q)
    st.apply(ComputeAtStep{0, 3, 0});   // P at Y.i.0: must cover R's reads P(7 - i)
    CHECK(check_lowering(st) < 1e-5);
  }
}

// Found by the differential fuzzer: the unroll pragma counted only the stage's own loops, so
// a loop with another stage's nest inside was unrolled (127 x 9 copies of a nest; LLVM took
// many minutes). Like TVM's auto_unroll_max_step it now counts the steps of the whole body.
TEST_CASE("the unroll pragma counts the nests of stages computed inside a loop", "[lower][regression]") {
  auto dag = dense_relu_dag(12, 16, 5);
  State st(dag);                        // Y: i j
  st.apply(SplitStep{1, 0, {4}});       // Y: i.0 (3) i.1 (4) j (16)
  st.apply(ComputeAtStep{0, 1, 1});     // D at Y.i.1: 16 x 5 steps + 16 inits inside
  st.apply(PragmaStep{1, 0, "auto_unroll_max_step", 64});
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  INFO(text);
  CHECK(text.find("unrolled for (Y.j,") != std::string::npos);     // 16 steps
  CHECK(text.find("unrolled for (Y.i.1,") == std::string::npos);   // 4 x (16 + 96) > 64
  CHECK(text.find("for (Y.i.1,") != std::string::npos);
}


TEST_CASE("the unroll pragma counts a vectorized loop once", "[lower]") {
  auto dag = matmul_dag(8, 32, 8);
  State st(dag);
  st.apply(SplitStep{0, 1, {16}});             // i j.0 j.1 (16) k (8)
  st.apply(SplitStep{0, 0, {4}});              // i.0 i.1 (4) j.0 j.1 k
  st.apply(ReorderStep{0, {0, 2, 4, 1, 3}});   // i.0 j.0 k i.1 j.1
  st.apply(AnnotateStep{0, 4, Annotation::Vectorize});
  st.apply(PragmaStep{0, 0, "auto_unroll_max_step", 16});
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  INFO(text);
  CHECK(text.find("unrolled for (C.i.1,") != std::string::npos);  // 4 x one vector statement
  CHECK(text.find("unrolled for (C.k,") == std::string::npos);    // 8 x 4 > 16
}

TEST_CASE("a register tile of unrolled loops runs its longest loop outermost", "[lower]") {
  auto dag = matmul_dag(14, 32, 4);
  State st(dag);
  st.apply(SplitStep{0, 1, {2, 16}});         // i (14) j.0 j.1 (2) j.2 (16) k
  st.apply(ReorderStep{0, {1, 4, 2, 0, 3}});  // j.0 k j.1 i j.2
  st.apply(AnnotateStep{0, 2, Annotation::Unroll});
  st.apply(AnnotateStep{0, 3, Annotation::Unroll});
  st.apply(AnnotateStep{0, 4, Annotation::Vectorize});
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  INFO(text);
  // i (14) now encloses j.1 (2), both unrolled, around the vectorized j.2.
  const auto i_loop = text.find("unrolled for (C.i,"), j1_loop = text.find("unrolled for (C.j.1,");
  REQUIRE(i_loop != std::string::npos);
  REQUIRE(j1_loop != std::string::npos);
  CHECK(i_loop < j1_loop);
}

TEST_CASE("a stage computed inside a smaller region runs its split loops only as far as the region", "[lower][regression]") {
  // C.local is split by lengths that describe a 16-row tile, but it is computed at the copy
  // stage's 4x4 tile: its loops shrink to the region (i.1: 8 -> 2) instead of running guarded,
  // empty iterations.
  auto dag = matmul_dag(16, 16, 6);
  State st(dag);
  st.apply(CacheWriteStep{0, ir::MemoryScope::Local});
  st.apply(SplitStep{1, 1, {4}});
  st.apply(SplitStep{1, 0, {4}});
  st.apply(ReorderStep{1, {0, 2, 1, 3}});
  st.apply(ComputeAtStep{0, 1, 1});
  st.apply(SplitStep{0, 0, {8, 2}});  // C.local: i.0 i.1 (8) i.2 (2) j k
  CHECK(check_lowering(st) < 1e-5);
  const std::string text = ir::to_string(lower(st, "k").body);
  INFO(text);
  CHECK(text.find("if") == std::string::npos);
  CHECK(text.find("C.local.i.1 < 8") == std::string::npos);
}

TEST_CASE("the shipped matmul_packed kernel multiplies by the B its panels pack", "[lower][kernels]") {
  // C[i, jo, ji] is the row-major M x N product of A and the B that Bp packs.
  const int64_t M = 5, N = 8, K = 3, nb = 4;
  auto dag = std::make_shared<const te::ComputeDAG>(
      te::parse_kernel_file(std::string(KTUNE_SOURCE_DIR) + "/kernels/matmul_packed.kt").instantiate({{"M", M}, {"N", N}, {"K", K}, {"nb", nb}}));
  std::vector<float> A(M * K), B(K * N), Bp(K * N), C(M * N, NAN);
  for (size_t i = 0; i < A.size(); ++i) A[i] = float(int(i * 7 % 11) - 5);
  for (size_t i = 0; i < B.size(); ++i) B[i] = float(int(i * 5 % 13) - 6);
  for (int64_t jo = 0; jo < N / nb; ++jo)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t ji = 0; ji < nb; ++ji) Bp[(jo * K + k) * nb + ji] = B[k * N + jo * nb + ji];
  ir::interpret(lower(State(dag), "k"), {A.data(), Bp.data(), C.data()});
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float want = 0;
      for (int64_t k = 0; k < K; ++k) want += A[i * K + k] * B[k * N + j];
      INFO("C[" << i << "][" << j << "]");
      CHECK(C[i * N + j] == want);
    }
}
