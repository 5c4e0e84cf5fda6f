// ComputeDAG <-> JSON. Expressions are arrays: [kind, type, operands...], a type is
// [code, bits, lanes], and variables are indices into the DAG's "vars" table, so the axes and
// the bodies that use them share one node after the round trip, as they did before.
#include "ktune/schedule/dag_json.h"

#include <bit>
#include <unordered_map>

#include "ktune/schedule/json_checked.h"
#include "ktune/support/error.h"

namespace ktune::schedule {

using nlohmann::json;

namespace {

json type_json(ir::Type t) { return json::array({int(t.code), int(t.bits), int(t.lanes)}); }

ir::Type type_from(const json& j) {
  KT_USER_CHECK(j.is_array() && j.size() == 3 && json_holds<int>(j[0]) && json_holds<int>(j[1]) &&
                    json_holds<int>(j[2]),
                "DAG JSON: a type must be [code, bits, lanes]");
  const int code = j[0].get<int>(), bits = j[1].get<int>(), lanes = j[2].get<int>();
  KT_USER_CHECK(code >= 0 && code <= int(ir::TypeCode::Bool) && bits >= 1 && bits <= 64 && lanes >= 1 &&
                    lanes <= 1024,
                "DAG JSON: bad type ", j.dump());
  return {ir::TypeCode(code), uint8_t(bits), uint16_t(lanes)};
}

const char* const kExprKinds[] = {
#define KT_X(n) #n,
    KTUNE_EXPR_NODES(KT_X)
#undef KT_X
};

class Writer {
 public:
  json expr(const ir::Expr& e) {
    KT_CHECK(e.defined(), "undefined expression in a ComputeDAG");
    json j = json::array({ir::kind_name(e.kind()), type_json(e.type())});
    auto bin = [&](const auto* n) {
      j.push_back(expr(n->a));
      j.push_back(expr(n->b));
    };
    switch (e.kind()) {
      case ir::ExprKind::IntImm: j.push_back(e.as<ir::IntImm>()->value); break;
      case ir::ExprKind::FloatImm: j.push_back(std::bit_cast<uint64_t>(e.as<ir::FloatImm>()->value)); break;
      case ir::ExprKind::Var: j.push_back(var(e)); break;
      case ir::ExprKind::Cast: j.push_back(expr(e.as<ir::Cast>()->value)); break;
      case ir::ExprKind::Add: bin(e.as<ir::Add>()); break;
      case ir::ExprKind::Sub: bin(e.as<ir::Sub>()); break;
      case ir::ExprKind::Mul: bin(e.as<ir::Mul>()); break;
      case ir::ExprKind::Div: bin(e.as<ir::Div>()); break;
      case ir::ExprKind::Mod: bin(e.as<ir::Mod>()); break;
      case ir::ExprKind::Min: bin(e.as<ir::Min>()); break;
      case ir::ExprKind::Max: bin(e.as<ir::Max>()); break;
      case ir::ExprKind::EQ: bin(e.as<ir::EQ>()); break;
      case ir::ExprKind::NE: bin(e.as<ir::NE>()); break;
      case ir::ExprKind::LT: bin(e.as<ir::LT>()); break;
      case ir::ExprKind::LE: bin(e.as<ir::LE>()); break;
      case ir::ExprKind::GT: bin(e.as<ir::GT>()); break;
      case ir::ExprKind::GE: bin(e.as<ir::GE>()); break;
      case ir::ExprKind::And: bin(e.as<ir::And>()); break;
      case ir::ExprKind::Or: bin(e.as<ir::Or>()); break;
      case ir::ExprKind::Not: j.push_back(expr(e.as<ir::Not>()->a)); break;
      case ir::ExprKind::Select: {
        const auto* s = e.as<ir::Select>();
        j.push_back(expr(s->cond));
        j.push_back(expr(s->true_value));
        j.push_back(expr(s->false_value));
        break;
      }
      case ir::ExprKind::Call: {
        const auto* c = e.as<ir::Call>();
        j.push_back(int(c->func));
        for (const auto& a : c->args) j.push_back(expr(a));
        break;
      }
      case ir::ExprKind::TensorRead: {
        const auto* t = e.as<ir::TensorRead>();
        j.push_back(t->tensor);
        for (const auto& i : t->indices) j.push_back(expr(i));
        break;
      }
      case ir::ExprKind::Load:
      case ir::ExprKind::Ramp:
      case ir::ExprKind::Broadcast:
        KT_CHECK(false, ir::kind_name(e.kind()), " in a ComputeDAG body");
    }
    return j;
  }
  int var(const ir::Expr& v) {
    auto [it, fresh] = ids_.emplace(v.get(), int(vars.size()));
    if (fresh) vars.push_back({{"name", v.as<ir::Var>()->name}, {"type", type_json(v.type())}});
    return it->second;
  }
  json vars = json::array();

 private:
  std::unordered_map<const ir::ExprNode*, int> ids_;
};

class Reader {
 public:
  explicit Reader(const json& vars) {
    KT_USER_CHECK(vars.is_array(), "DAG JSON: 'vars' must be an array");
    for (const json& v : vars) {
      KT_USER_CHECK(v.is_object() && v.contains("name") && v["name"].is_string() && v.contains("type"),
                    "DAG JSON: a var needs 'name' and 'type'");
      vars_.push_back(ir::Var::make(v["name"].get<std::string>(), type_from(v["type"])));
    }
  }
  ir::Expr var(const json& j) const {
    KT_USER_CHECK(j.is_number_integer() && j.get<int64_t>() >= 0 && j.get<int64_t>() < int64_t(vars_.size()),
                  "DAG JSON: bad var index ", j.dump());
    return vars_[j.get<size_t>()];
  }
  ir::Expr expr(const json& j, int depth = 0) const {
    KT_USER_CHECK(depth < 2000, "DAG JSON: expression nested too deeply");
    KT_USER_CHECK(j.is_array() && j.size() >= 2 && j[0].is_string(), "DAG JSON: an expression must be [kind, type, ...]");
    const std::string kind = j[0].get<std::string>();
    const ir::Type t = type_from(j[1]);
    int k = 0;
    while (k < int(std::size(kExprKinds)) && kind != kExprKinds[k]) ++k;
    KT_USER_CHECK(k < int(std::size(kExprKinds)), "DAG JSON: unknown expression kind '", kind, "'");
    auto arity = [&](size_t n) { KT_USER_CHECK(j.size() == n + 2, "DAG JSON: ", kind, " takes ", n, " operands"); };
    auto sub = [&](size_t i) { return expr(j[i], depth + 1); };
    auto bin = [&]<typename N>() -> ir::Expr {
      arity(2);
      return ir::Expr(std::make_shared<const N>(t, sub(2), sub(3)));
    };
    switch (ir::ExprKind(k)) {
      case ir::ExprKind::IntImm:
        arity(1);
        KT_USER_CHECK(json_holds<int64_t>(j[2]), "DAG JSON: IntImm needs an integer");
        return ir::Expr(std::make_shared<const ir::IntImm>(t, j[2].get<int64_t>()));
      case ir::ExprKind::FloatImm:
        arity(1);
        KT_USER_CHECK(json_holds<uint64_t>(j[2]), "DAG JSON: FloatImm needs its bit pattern");
        return ir::Expr(std::make_shared<const ir::FloatImm>(t, std::bit_cast<double>(j[2].get<uint64_t>())));
      case ir::ExprKind::Var: arity(1); return var(j[2]);
      case ir::ExprKind::Cast: arity(1); return ir::Expr(std::make_shared<const ir::Cast>(t, sub(2)));
      case ir::ExprKind::Add: return bin.template operator()<ir::Add>();
      case ir::ExprKind::Sub: return bin.template operator()<ir::Sub>();
      case ir::ExprKind::Mul: return bin.template operator()<ir::Mul>();
      case ir::ExprKind::Div: return bin.template operator()<ir::Div>();
      case ir::ExprKind::Mod: return bin.template operator()<ir::Mod>();
      case ir::ExprKind::Min: return bin.template operator()<ir::Min>();
      case ir::ExprKind::Max: return bin.template operator()<ir::Max>();
      case ir::ExprKind::EQ: return bin.template operator()<ir::EQ>();
      case ir::ExprKind::NE: return bin.template operator()<ir::NE>();
      case ir::ExprKind::LT: return bin.template operator()<ir::LT>();
      case ir::ExprKind::LE: return bin.template operator()<ir::LE>();
      case ir::ExprKind::GT: return bin.template operator()<ir::GT>();
      case ir::ExprKind::GE: return bin.template operator()<ir::GE>();
      case ir::ExprKind::And: return bin.template operator()<ir::And>();
      case ir::ExprKind::Or: return bin.template operator()<ir::Or>();
      case ir::ExprKind::Not: arity(1); return ir::Expr(std::make_shared<const ir::Not>(t, sub(2)));
      case ir::ExprKind::Select:
        arity(3);
        return ir::Expr(std::make_shared<const ir::Select>(t, sub(2), sub(3), sub(4)));
      case ir::ExprKind::Call: {
        KT_USER_CHECK(j.size() >= 3 && json_holds<int>(j[2]) && j[2].get<int>() >= 0 &&
                          j[2].get<int>() <= int(ir::Intrinsic::Sigmoid),
                      "DAG JSON: bad Call");
        std::vector<ir::Expr> args;
        for (size_t i = 3; i < j.size(); ++i) args.push_back(sub(i));
        return ir::Expr(std::make_shared<const ir::Call>(t, ir::Intrinsic(j[2].get<int>()), std::move(args)));
      }
      case ir::ExprKind::TensorRead: {
        KT_USER_CHECK(j.size() >= 3 && j[2].is_string(), "DAG JSON: bad TensorRead");
        std::vector<ir::Expr> idx;
        for (size_t i = 3; i < j.size(); ++i) idx.push_back(sub(i));
        return ir::Expr(std::make_shared<const ir::TensorRead>(t, j[2].get<std::string>(), std::move(idx)));
      }
      case ir::ExprKind::Load:
      case ir::ExprKind::Ramp:
      case ir::ExprKind::Broadcast:
        break;
    }
    throw UserError("DAG JSON: " + kind + " cannot appear in a ComputeDAG");
  }

 private:
  std::vector<ir::Expr> vars_;
};

template <typename T>
T get(const json& j, const char* name) {
  KT_USER_CHECK(j.is_object() && j.contains(name), "DAG JSON: missing field '", name, "'");
  KT_USER_CHECK(json_holds<T>(j.at(name)), "DAG JSON: field '", name, "' has the wrong type");
  try {
    return j.at(name).get<T>();
  } catch (const json::exception&) {
    throw UserError(detail::concat("DAG JSON: field '", name, "' has the wrong type"));
  }
}

}  // namespace

json dag_to_json(const te::ComputeDAG& dag) {
  Writer w;
  json ops = json::array();
  for (const te::Operation& o : dag.ops) {
    json op = {{"name", o.name},
               {"placeholder", o.is_placeholder()},
               {"dtype", type_json(o.dtype)},
               {"shape", o.shape},
               {"const", o.is_const},
               {"output", o.is_output}};
    if (!o.is_placeholder()) {
      auto axes = [&](const std::vector<te::Axis>& v) {
        json a = json::array();
        for (const auto& ax : v) a.push_back(json::array({w.var(ax.var), ax.extent}));
        return a;
      };
      op["axes"] = axes(o.axes);
      op["reduce_axes"] = axes(o.reduce_axes);
      op["reduce"] = int(o.reduce);
      op["body"] = w.expr(o.body);
    }
    ops.push_back(std::move(op));
  }
  json params = json::array();
  for (const auto& [k, v] : dag.params) params.push_back(json::array({k, v}));
  return {{"kernel", dag.kernel}, {"params", params}, {"dtype", dag.dtype}, {"vars", w.vars}, {"ops", ops}};
}

te::ComputeDAG dag_from_json(const json& j) {
  te::ComputeDAG dag;
  dag.kernel = get<std::string>(j, "kernel");
  dag.dtype = get<std::string>(j, "dtype");
  for (const json& p : get<json>(j, "params")) {
    KT_USER_CHECK(p.is_array() && p.size() == 2 && p[0].is_string() && json_holds<int64_t>(p[1]),
                  "DAG JSON: a parameter must be [name, value]");
    dag.params.emplace_back(p[0].get<std::string>(), p[1].get<int64_t>());
  }
  Reader r(get<json>(j, "vars"));
  const json ops = get<json>(j, "ops");
  KT_USER_CHECK(ops.is_array(), "DAG JSON: 'ops' must be an array");
  for (const json& op : ops) {
    te::Operation o;
    o.name = get<std::string>(op, "name");
    o.kind = get<bool>(op, "placeholder") ? te::Operation::Kind::Placeholder : te::Operation::Kind::Compute;
    o.dtype = type_from(get<json>(op, "dtype"));
    o.shape = get<std::vector<int64_t>>(op, "shape");
    o.is_const = get<bool>(op, "const");
    o.is_output = get<bool>(op, "output");
    if (!o.is_placeholder()) {
      auto axes = [&](const char* name) {
        std::vector<te::Axis> out;
        for (const json& a : get<json>(op, name)) {
          KT_USER_CHECK(a.is_array() && a.size() == 2 && json_holds<int64_t>(a[1]), "DAG JSON: bad axis");
          out.push_back({r.var(a[0]), a[1].get<int64_t>()});
        }
        return out;
      };
      o.axes = axes("axes");
      o.reduce_axes = axes("reduce_axes");
      const int rk = get<int>(op, "reduce");
      KT_USER_CHECK(rk >= 0 && rk <= int(te::ReduceKind::Min), "DAG JSON: bad reduce kind ", rk);
      o.reduce = te::ReduceKind(rk);
      o.body = r.expr(get<json>(op, "body"));
    }
    dag.ops.push_back(std::move(o));
  }
  return dag;
}

}  // namespace ktune::schedule
