// State construction, the naive schedule, printing, and extent inference through relations.
#include "ktune/schedule/state.h"

#include <sstream>

#include "ktune/schedule/steps.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::schedule {

const char* annotation_name(Annotation a) {
  switch (a) {
    case Annotation::None: return "none";
    case Annotation::Parallel: return "parallel";
    case Annotation::Vectorize: return "vectorize";
    case Annotation::Unroll: return "unroll";
    case Annotation::BlockIdxX: return "blockIdx.x";
    case Annotation::BlockIdxY: return "blockIdx.y";
    case Annotation::BlockIdxZ: return "blockIdx.z";
    case Annotation::ThreadIdxX: return "threadIdx.x";
    case Annotation::ThreadIdxY: return "threadIdx.y";
    case Annotation::ThreadIdxZ: return "threadIdx.z";
    case Annotation::VThread: return "vthread";
  }
  return "?";
}

bool parse_annotation(const std::string& s, Annotation* out) {
  for (int i = 0; i <= int(Annotation::VThread); ++i) {
    if (s == annotation_name(Annotation(i))) {
      *out = Annotation(i);
      return true;
    }
  }
  return false;
}

int Stage::leaf_position(int id) const {
  for (size_t i = 0; i < leaf.size(); ++i)
    if (leaf[i] == id) return int(i);
  return -1;
}

namespace {
std::string axis_name(const te::Axis& a) {
  const auto* v = a.var.as<ir::Var>();
  return v ? v->name : "ax";
}
}  // namespace

Stage initial_stage(const te::Operation& op) {
  Stage s;
  s.op = op;
  for (const auto& a : op.axes) s.iters.push_back({axis_name(a), a.extent, IterKind::Spatial});
  for (const auto& a : op.reduce_axes) s.iters.push_back({axis_name(a), a.extent, IterKind::Reduce});
  for (size_t i = 0; i < s.iters.size(); ++i) s.leaf.push_back(int(i));
  return s;
}

State::State(std::shared_ptr<const te::ComputeDAG> dag) : dag_(std::move(dag)) {
  for (const auto& op : dag_->ops)
    if (!op.is_placeholder()) stages_.push_back(initial_stage(op));
}

int State::stage_index(const std::string& name) const {
  for (size_t i = 0; i < stages_.size(); ++i)
    if (stages_[i].op.name == name) return int(i);
  return -1;
}

const std::vector<Step>& State::steps() const {
  static const std::vector<Step> empty;
  return steps_ ? *steps_ : empty;
}

void State::apply(const Step& step) {
  step.apply_to(*this);
  auto v = steps_ ? std::make_shared<std::vector<Step>>(*steps_) : std::make_shared<std::vector<Step>>();
  v->push_back(step);
  steps_ = std::move(v);
}

std::string State::steps_text() const {
  State replayed(dag_);
  std::string out;
  for (const auto& s : steps()) {
    out += s.to_string(replayed) + "\n";
    replayed.apply(s);
  }
  return out;
}

std::string State::to_string() const {
  std::ostringstream os;
  for (size_t si = 0; si < stages_.size(); ++si) {
    const Stage& s = stages_[si];
    os << "stage " << si << " " << s.op.name;
    if (s.location == ComputeLocation::Inlined) os << " (inlined)";
    if (s.location == ComputeLocation::At)
      os << " (at " << stages_[s.attach_stage].op.name << "."
         << stages_[s.attach_stage].iters[s.attach_iter].name << ")";
    if (s.auto_unroll_max_step) os << " auto_unroll_max_step=" << s.auto_unroll_max_step;
    for (const StorageAlignment& a : s.storage_align)
      os << " storage_align(dim " << a.dim << ", " << a.factor << ", " << a.offset << ")";
    os << "\n";
    for (int pos = 0; pos < int(s.leaf.size()); ++pos) {
      const Iterator& it = s.leaf_iter(pos);
      os << std::string(2 * (pos + 1), ' ') << (it.annotation == Annotation::None ? "for" : annotation_name(it.annotation))
         << " " << it.name << " in 0.." << it.extent << (it.kind == IterKind::Reduce ? " (reduce)" : "") << "\n";
    }
  }
  return os.str();
}

std::vector<int64_t> infer_iter_extents(const Stage& stage, const std::vector<int64_t>& root_extents) {
  std::vector<int64_t> ext(stage.iters.size(), 0);
  for (size_t i = 0; i < root_extents.size(); ++i) ext[i] = root_extents[i];
  for (const Relation& r : stage.relations) {
    if (const auto* sp = std::get_if<SplitRelation>(&r)) {
      // A loop runs only as far as the parent's extent reaches: with the lengths inner to it
      // multiplying to S, a loop of length l runs min(l, ceil(E / S)) times. Inside a
      // consumer's tile the parent's extent can be smaller than the tile the lengths
      // describe; the loops then shrink instead of running guarded, empty iterations.
      const int64_t e = ext[sp->parent];
      int64_t inner = 1;
      for (size_t k = sp->lengths.size(); k-- > 0;) {
        ext[sp->children[k + 1]] = std::min(sp->lengths[k], ceil_div(e, inner));
        inner *= sp->lengths[k];
      }
      ext[sp->children[0]] = ceil_div(e, inner);
    } else {
      const auto& fu = std::get<FuseRelation>(r);
      int64_t p = 1;
      for (int id : fu.parents) p *= ext[id];
      ext[fu.child] = p;
    }
  }
  return ext;
}

}  // namespace ktune::schedule
