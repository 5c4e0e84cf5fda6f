// LLVM IR emission for CPU targets (see llvm_codegen.h for the calling convention).
//
// The module for kernel NAME holds:
//   void NAME(void** args)                 external entry; loads args[i] and calls NAME_impl
//   void NAME_impl(ptr noalias ...)         internal; the loop nest (inlined by -O3, which turns
//                                           the noalias arguments into alias scopes)
//   void NAME_par_N(ptr closure, i64 begin, i64 end)   one per Parallel loop; unpacks the
//                                           closure and calls NAME_par_N_impl(ptr noalias ...,
//                                           scalars..., i64 min, i64 begin, i64 end), which
//                                           runs iterations min+begin .. min+end-1
// A parallel loop stores every variable and buffer pointer its body uses into a closure
// struct on the caller's stack and calls ktune_parallel_for(NAME_par_N, closure, extent).
// A Parallel loop inside another one runs serially in the outlined body.
//
// Vectors: Ramp/Broadcast become LLVM vectors; a Load/Store whose index is a Ramp of stride 1
// is one vector load/store, a Broadcast index is a scalar access, and any other vector index
// is a masked gather/scatter. Memory is only assumed aligned to the element size.
// Integer Div/Mod are floor division/modulo (udiv/urem only when the dividend is provably
// non-negative and the divisor a positive constant). Float arithmetic carries the `contract`
// and `reassoc` fast-math flags (a*b+c becomes an FMA; reductions may be reassociated).
#include "ktune/codegen/llvm_codegen.h"

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/CommandLine.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>
#include <llvm/TargetParser/Triple.h>

#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/printer.h"
#include "ktune/ir/simplify.h"
#include "ktune/ir/visitor.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::codegen {

namespace {

using ir::Expr;
using ir::Stmt;

constexpr int64_t kMaxStackAllocBytes = 64 * 1024;

// Variables and buffers a statement uses but does not define, in order of first use.
struct FreeVars : ir::IRVisitor {
  std::vector<const ir::Var*> vars;
  std::vector<const ir::BufferNode*> buffers;

  void visit_Var(const ir::Var* op) override {
    if (!bound_.count(op) && seen_vars_.insert(op).second) vars.push_back(op);
  }
  void visit_For(const ir::For* op) override {
    visit(op->min);
    visit(op->extent);
    bound_.insert(op->var.get());
    visit(op->body);
  }
  void visit_LetStmt(const ir::LetStmt* op) override {
    visit(op->value);
    bound_.insert(op->var.get());
    visit(op->body);
  }
  void visit_Allocate(const ir::Allocate* op) override {
    local_.insert(op->buffer.get());
    visit(op->body);
  }
  void visit_Load(const ir::Load* op) override {
    use(op->buffer.get());
    visit(op->index);
  }
  void visit_Store(const ir::Store* op) override {
    use(op->buffer.get());
    visit(op->value);
    visit(op->index);
  }

 private:
  void use(const ir::BufferNode* b) {
    if (!local_.count(b) && seen_bufs_.insert(b).second) buffers.push_back(b);
  }
  std::unordered_set<const ir::ExprNode*> bound_, seen_vars_;
  std::unordered_set<const ir::BufferNode*> local_, seen_bufs_;
};

void check_supported_type(ir::Type t) {
  if ((t.code == ir::TypeCode::Float && t.bits == 16) || t.code == ir::TypeCode::BFloat) {
    throw InvalidCandidate(detail::concat("dtype ", t.element_of().to_string(),
                                          " is not supported by the CPU code generator yet"));
  }
}

class CodeGenLLVM {
 public:
  CodeGenLLVM(llvm::Module& m, const ir::LoweredFunc& f)
      : ctx_(m.getContext()), mod_(m), b_(m.getContext()), f_(f) {
    llvm::FastMathFlags fmf;
    fmf.setAllowContract(true);
    fmf.setAllowReassoc(true);
    b_.setFastMathFlags(fmf);
  }

  void run() {
    for (const auto& buf : f_.args) check_supported_type(buf->dtype);
    llvm::Type* ptr = llvm::PointerType::get(ctx_, 0);
    llvm::Type* void_ty = llvm::Type::getVoidTy(ctx_);

    std::vector<llvm::Type*> params(f_.args.size(), ptr);
    auto* impl = llvm::Function::Create(llvm::FunctionType::get(void_ty, params, false),
                                        llvm::Function::InternalLinkage, f_.name + "_impl", mod_);
    impl->addFnAttr(llvm::Attribute::NoUnwind);
    for (size_t i = 0; i < f_.args.size(); ++i) {
      impl->addParamAttr(unsigned(i), llvm::Attribute::NoAlias);
      impl->getArg(unsigned(i))->setName(f_.args[i]->name);
      buffers_[f_.args[i].get()] = impl->getArg(unsigned(i));
    }
    fn_ = impl;
    b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", impl));
    emit(f_.body);
    b_.CreateRetVoid();

    auto* entry = llvm::Function::Create(llvm::FunctionType::get(void_ty, {ptr}, false),
                                         llvm::Function::ExternalLinkage, f_.name, mod_);
    entry->addFnAttr(llvm::Attribute::NoUnwind);
    entry->getArg(0)->setName("args");
    b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", entry));
    std::vector<llvm::Value*> call_args;
    for (size_t i = 0; i < f_.args.size(); ++i) {
      llvm::Value* slot = b_.CreateConstInBoundsGEP1_64(ptr, entry->getArg(0), i);
      call_args.push_back(b_.CreateAlignedLoad(ptr, slot, llvm::Align(8), f_.args[i]->name));
    }
    b_.CreateCall(impl, call_args);
    b_.CreateRetVoid();
  }

 private:
  // ---- types -------------------------------------------------------------------------

  llvm::Type* scalar_type(ir::Type t) {
    check_supported_type(t);
    switch (t.code) {
      case ir::TypeCode::Float:
        if (t.bits == 32) return llvm::Type::getFloatTy(ctx_);
        if (t.bits == 64) return llvm::Type::getDoubleTy(ctx_);
        break;
      case ir::TypeCode::Int:
        return llvm::Type::getIntNTy(ctx_, t.bits);
      case ir::TypeCode::Bool:
        return llvm::Type::getInt1Ty(ctx_);
      case ir::TypeCode::BFloat:
        break;
    }
    throw InvalidCandidate(
        detail::concat("dtype ", t.to_string(), " is not supported by the CPU code generator yet"));
  }
  llvm::Type* llvm_type(ir::Type t) {
    llvm::Type* s = scalar_type(t);
    return t.lanes == 1 ? s : llvm::FixedVectorType::get(s, t.lanes);
  }
  // Element type in memory: bool is one byte.
  llvm::Type* storage_type(ir::Type t) {
    return t.is_bool() ? llvm::Type::getInt8Ty(ctx_) : scalar_type(t.element_of());
  }

  llvm::Value* splat(llvm::Value* v, int lanes) {
    if (lanes == 1 || v->getType()->isVectorTy()) return v;
    return b_.CreateVectorSplat(unsigned(lanes), v);
  }
  // Brings two operands to the same number of lanes (a scalar meets a vector by splatting).
  void match_lanes(llvm::Value*& a, llvm::Value*& b) {
    auto lanes = [](llvm::Value* v) {
      auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(v->getType());
      return vt ? int(vt->getNumElements()) : 1;
    };
    int la = lanes(a), lb = lanes(b);
    if (la == lb) return;
    if (la == 1)
      a = splat(a, lb);
    else if (lb == 1)
      b = splat(b, la);
    else
      KT_CHECK(false, "operands with ", la, " and ", lb, " lanes");
  }
  // Converts an integer (vector) value to i64 lanes for addressing.
  llvm::Value* to_i64(llvm::Value* v) {
    llvm::Type* t = v->getType();
    llvm::Type* i64 = llvm::Type::getInt64Ty(ctx_);
    if (auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(t)) {
      i64 = llvm::FixedVectorType::get(i64, vt->getNumElements());
    }
    return b_.CreateSExtOrTrunc(v, i64);
  }

  // ---- expressions -------------------------------------------------------------------

  llvm::Value* emit(const Expr& e) {
    switch (e.kind()) {
      case ir::ExprKind::IntImm: {
        const auto* op = e.as<ir::IntImm>();
        if (op->type.is_bool()) return b_.getInt1(op->value != 0);
        return llvm::ConstantInt::get(llvm_type(op->type), uint64_t(op->value), true);
      }
      case ir::ExprKind::FloatImm: {
        const auto* op = e.as<ir::FloatImm>();
        return llvm::ConstantFP::get(llvm_type(op->type), op->value);
      }
      case ir::ExprKind::Var: {
        const auto* op = e.as<ir::Var>();
        auto it = vars_.find(op);
        KT_CHECK(it != vars_.end(), "variable ", op->name, " is used outside its scope");
        return it->second;
      }
      case ir::ExprKind::Cast:
        return emit_cast(e.as<ir::Cast>());
      case ir::ExprKind::Add:
        return emit_arith(e, e.as<ir::Add>()->a, e.as<ir::Add>()->b);
      case ir::ExprKind::Sub:
        return emit_arith(e, e.as<ir::Sub>()->a, e.as<ir::Sub>()->b);
      case ir::ExprKind::Mul:
        return emit_arith(e, e.as<ir::Mul>()->a, e.as<ir::Mul>()->b);
      case ir::ExprKind::Div:
        return emit_div_mod(e.as<ir::Div>()->a, e.as<ir::Div>()->b, /*is_mod=*/false);
      case ir::ExprKind::Mod:
        return emit_div_mod(e.as<ir::Mod>()->a, e.as<ir::Mod>()->b, /*is_mod=*/true);
      case ir::ExprKind::Min:
        return emit_min_max(e.as<ir::Min>()->a, e.as<ir::Min>()->b, /*is_min=*/true);
      case ir::ExprKind::Max:
        return emit_min_max(e.as<ir::Max>()->a, e.as<ir::Max>()->b, /*is_min=*/false);
      case ir::ExprKind::EQ:
        return emit_cmp(e.as<ir::EQ>()->a, e.as<ir::EQ>()->b, llvm::CmpInst::ICMP_EQ,
                        llvm::CmpInst::ICMP_EQ, llvm::CmpInst::FCMP_OEQ);
      case ir::ExprKind::NE:
        return emit_cmp(e.as<ir::NE>()->a, e.as<ir::NE>()->b, llvm::CmpInst::ICMP_NE,
                        llvm::CmpInst::ICMP_NE, llvm::CmpInst::FCMP_UNE);
      case ir::ExprKind::LT:
        return emit_cmp(e.as<ir::LT>()->a, e.as<ir::LT>()->b, llvm::CmpInst::ICMP_SLT,
                        llvm::CmpInst::ICMP_ULT, llvm::CmpInst::FCMP_OLT);
      case ir::ExprKind::LE:
        return emit_cmp(e.as<ir::LE>()->a, e.as<ir::LE>()->b, llvm::CmpInst::ICMP_SLE,
                        llvm::CmpInst::ICMP_ULE, llvm::CmpInst::FCMP_OLE);
      case ir::ExprKind::GT:
        return emit_cmp(e.as<ir::GT>()->a, e.as<ir::GT>()->b, llvm::CmpInst::ICMP_SGT,
                        llvm::CmpInst::ICMP_UGT, llvm::CmpInst::FCMP_OGT);
      case ir::ExprKind::GE:
        return emit_cmp(e.as<ir::GE>()->a, e.as<ir::GE>()->b, llvm::CmpInst::ICMP_SGE,
                        llvm::CmpInst::ICMP_UGE, llvm::CmpInst::FCMP_OGE);
      case ir::ExprKind::And: {
        llvm::Value *a = emit(e.as<ir::And>()->a), *b = emit(e.as<ir::And>()->b);
        match_lanes(a, b);
        return b_.CreateAnd(a, b);
      }
      case ir::ExprKind::Or: {
        llvm::Value *a = emit(e.as<ir::Or>()->a), *b = emit(e.as<ir::Or>()->b);
        match_lanes(a, b);
        return b_.CreateOr(a, b);
      }
      case ir::ExprKind::Not:
        return b_.CreateNot(emit(e.as<ir::Not>()->a));
      case ir::ExprKind::Select: {
        const auto* op = e.as<ir::Select>();
        if (has_load(op->true_value) || has_load(op->false_value)) return emit_guarded_select(op);
        llvm::Value* c = emit(op->cond);
        llvm::Value *t = emit(op->true_value), *f = emit(op->false_value);
        match_lanes(t, f);
        if (auto* cv = llvm::dyn_cast<llvm::FixedVectorType>(c->getType())) {
          t = splat(t, int(cv->getNumElements()));
          f = splat(f, int(cv->getNumElements()));
        }
        return b_.CreateSelect(c, t, f);
      }
      case ir::ExprKind::Load:
        return emit_load(e.as<ir::Load>());
      case ir::ExprKind::Ramp: {
        const auto* op = e.as<ir::Ramp>();
        llvm::Value* base = emit(op->base);
        llvm::Value* stride = emit(op->stride);
        std::vector<llvm::Constant*> steps;
        for (int i = 0; i < op->lanes; ++i) {
          steps.push_back(llvm::ConstantInt::get(base->getType(), uint64_t(i)));
        }
        llvm::Value* offs =
            b_.CreateMul(splat(stride, op->lanes), llvm::ConstantVector::get(steps));
        return b_.CreateAdd(splat(base, op->lanes), offs);
      }
      case ir::ExprKind::Broadcast: {
        const auto* op = e.as<ir::Broadcast>();
        return b_.CreateVectorSplat(unsigned(op->lanes), emit(op->value));
      }
      case ir::ExprKind::Call:
        return emit_call(e.as<ir::Call>());
      case ir::ExprKind::TensorRead:
        KT_CHECK(false, "TensorRead of ", e.as<ir::TensorRead>()->tensor,
                 " reached code generation (lowering should have replaced it)");
    }
    KT_CHECK(false, "unhandled expression kind");
    return nullptr;
  }

  llvm::Value* emit_cast(const ir::Cast* op) {
    ir::Type to = op->type, from = op->value.type();
    llvm::Value* v = emit(op->value);
    llvm::Type* t = llvm_type(to);
    if (to.element_of() == from.element_of()) return v;
    if (to.is_bool()) {
      if (from.is_float()) return b_.CreateFCmpUNE(v, llvm::Constant::getNullValue(v->getType()));
      return b_.CreateICmpNE(v, llvm::Constant::getNullValue(v->getType()));
    }
    if (to.is_float()) {
      if (from.is_float()) return b_.CreateFPCast(v, t);
      if (from.is_bool()) return b_.CreateUIToFP(v, t);
      return b_.CreateSIToFP(v, t);
    }
    // to int
    if (from.is_float()) return b_.CreateFPToSI(v, t);
    if (from.is_bool()) return b_.CreateZExt(v, t);
    return b_.CreateSExtOrTrunc(v, t);
  }

  llvm::Value* emit_arith(const Expr& e, const Expr& ea, const Expr& eb) {
    llvm::Value *a = emit(ea), *b = emit(eb);
    match_lanes(a, b);
    bool fp = ea.type().is_float();
    switch (e.kind()) {
      case ir::ExprKind::Add:
        return fp ? b_.CreateFAdd(a, b) : b_.CreateAdd(a, b);
      case ir::ExprKind::Sub:
        return fp ? b_.CreateFSub(a, b) : b_.CreateSub(a, b);
      case ir::ExprKind::Mul:
        return fp ? b_.CreateFMul(a, b) : b_.CreateMul(a, b);
      default:
        KT_CHECK(false, "not an arithmetic node");
    }
    return nullptr;
  }

  // True when `e` is provably >= 0 under the bounds of enclosing loops and lets.
  bool provably_nonnegative(const Expr& e) {
    if (!e.type().is_scalar()) return false;
    auto b = ir::const_bounds(e, bounds_);
    return b && b->min >= 0;
  }

  llvm::Value* emit_div_mod(const Expr& ea, const Expr& eb, bool is_mod) {
    llvm::Value *a = emit(ea), *b = emit(eb);
    match_lanes(a, b);
    if (ea.type().is_float()) {
      if (!is_mod) return b_.CreateFDiv(a, b);
      // Floor modulo: a - b * floor(a / b).
      llvm::Value* q = b_.CreateUnaryIntrinsic(llvm::Intrinsic::floor, b_.CreateFDiv(a, b));
      return b_.CreateFSub(a, b_.CreateFMul(b, q));
    }
    int64_t c = 0;
    bool pos_const = ir::is_const_int(eb, &c) && c > 0;
    if (pos_const && provably_nonnegative(ea)) {
      return is_mod ? b_.CreateURem(a, b) : b_.CreateUDiv(a, b);
    }
    llvm::Value* zero = llvm::Constant::getNullValue(a->getType());
    llvm::Value* q = b_.CreateSDiv(a, b);
    llvm::Value* r = b_.CreateSRem(a, b);
    // The truncated result is off by one when the remainder is non-zero and its sign differs
    // from the divisor's.
    llvm::Value* fix;
    if (pos_const) {
      fix = b_.CreateICmpSLT(r, zero);
    } else {
      fix = b_.CreateAnd(b_.CreateICmpNE(r, zero),
                         b_.CreateICmpNE(b_.CreateICmpSLT(r, zero), b_.CreateICmpSLT(b, zero)));
    }
    if (is_mod) return b_.CreateSelect(fix, b_.CreateAdd(r, b), r);
    return b_.CreateSub(q, b_.CreateZExt(fix, q->getType()));
  }

  llvm::Value* emit_min_max(const Expr& ea, const Expr& eb, bool is_min) {
    llvm::Value *a = emit(ea), *b = emit(eb);
    match_lanes(a, b);
    ir::Type t = ea.type();
    if (t.is_float()) return is_min ? b_.CreateMinNum(a, b) : b_.CreateMaxNum(a, b);
    if (t.is_bool()) return is_min ? b_.CreateAnd(a, b) : b_.CreateOr(a, b);
    return b_.CreateBinaryIntrinsic(is_min ? llvm::Intrinsic::smin : llvm::Intrinsic::smax, a, b);
  }

  llvm::Value* emit_cmp(const Expr& ea, const Expr& eb, llvm::CmpInst::Predicate signed_pred,
                        llvm::CmpInst::Predicate bool_pred, llvm::CmpInst::Predicate float_pred) {
    llvm::Value *a = emit(ea), *b = emit(eb);
    match_lanes(a, b);
    ir::Type t = ea.type();
    if (t.is_float()) return b_.CreateFCmp(float_pred, a, b);
    return b_.CreateICmp(t.is_bool() ? bool_pred : signed_pred, a, b);
  }

  llvm::Value* emit_call(const ir::Call* op) {
    KT_CHECK(!op->args.empty(), "intrinsic ", ir::intrinsic_name(op->func), " without arguments");
    llvm::Value* x = emit(op->args[0]);
    ir::Type t = op->args[0].type();
    switch (op->func) {
      case ir::Intrinsic::Abs:
        if (t.is_float()) return b_.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x);
        return b_.CreateBinaryIntrinsic(llvm::Intrinsic::abs, x, b_.getFalse());
      case ir::Intrinsic::Exp:
      case ir::Intrinsic::Sqrt:
      case ir::Intrinsic::Log:
      case ir::Intrinsic::Tanh:
      case ir::Intrinsic::Sigmoid:
        break;
    }
    KT_CANDIDATE_CHECK(t.is_float(), "intrinsic ", ir::intrinsic_name(op->func),
                       " needs a float argument, got ", t.to_string());
    bool f32 = t.bits == 32;
    switch (op->func) {
      case ir::Intrinsic::Exp:
        return emit_exp(x, f32);
      case ir::Intrinsic::Sqrt:
        return b_.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, x);
      case ir::Intrinsic::Log:
        return b_.CreateUnaryIntrinsic(llvm::Intrinsic::log, x);
      case ir::Intrinsic::Sigmoid: {
        // 1 / (1 + exp(-x))
        llvm::Value* one = llvm::ConstantFP::get(x->getType(), 1.0);
        llvm::Value* e = emit_exp(b_.CreateFNeg(x), f32);
        return b_.CreateFDiv(one, b_.CreateFAdd(one, e));
      }
      case ir::Intrinsic::Tanh:
        return f32 ? emit_tanh_f32(x) : emit_libm_call("tanh", x);
      case ir::Intrinsic::Abs:
        break;
    }
    KT_CHECK(false, "unhandled intrinsic");
    return nullptr;
  }

  // exp: f64 through llvm.exp (libm); f32 inline, so that vectors stay vectors (llvm.exp on
  // a vector becomes one libm call per lane). Cody-Waite reduction x = n*ln2 + r, |r| <=
  // ln2/2, the Cephes expf polynomial for e^r (about 1 ulp), and 2^n applied as two
  // exponent-field multiplies so that results down to the denormals stay exact in range.
  // Inputs above ln(FLT_MAX) give +inf, below -104 give 0, NaN gives NaN.
  llvm::Value* emit_exp(llvm::Value* x, bool f32) {
    if (!f32) return b_.CreateUnaryIntrinsic(llvm::Intrinsic::exp, x);
    llvm::IRBuilderBase::FastMathFlagGuard guard(b_);
    llvm::FastMathFlags contract_only;
    contract_only.setAllowContract(true);  // FMAs only help; reassociation would not
    b_.setFastMathFlags(contract_only);
    llvm::Type* ft = x->getType();
    llvm::Type* it = ft->getWithNewType(b_.getInt32Ty());
    auto c = [&](double v) { return llvm::ConstantFP::get(ft, v); };
    auto ci = [&](int64_t v) { return llvm::ConstantInt::get(it, uint64_t(v), true); };
    const double hi = 88.72283905206835, lo = -104.0;
    llvm::Value* xc = b_.CreateSelect(b_.CreateFCmpOGT(x, c(hi)), c(hi), x);
    xc = b_.CreateSelect(b_.CreateFCmpOLT(xc, c(lo)), c(lo), xc);
    llvm::Value* fx = b_.CreateUnaryIntrinsic(
        llvm::Intrinsic::floor, b_.CreateFAdd(b_.CreateFMul(xc, c(1.44269504088896341)), c(0.5)));
    llvm::Value* r = b_.CreateFSub(xc, b_.CreateFMul(fx, c(0.693359375)));
    r = b_.CreateFSub(r, b_.CreateFMul(fx, c(-2.12194440e-4)));
    llvm::Value* y = c(1.9875691500e-4);
    for (double k :
         {1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1}) {
      y = b_.CreateFAdd(b_.CreateFMul(y, r), c(k));
    }
    y = b_.CreateFAdd(b_.CreateFAdd(b_.CreateFMul(y, b_.CreateFMul(r, r)), r), c(1.0));
    llvm::Value* n = b_.CreateFPToSI(fx, it);
    llvm::Value* n1 = b_.CreateAShr(n, ci(1));
    llvm::Value* n2 = b_.CreateSub(n, n1);
    auto pow2 = [&](llvm::Value* e) {
      return b_.CreateBitCast(b_.CreateShl(b_.CreateAdd(e, ci(127)), ci(23)), ft);
    };
    llvm::Value* out = b_.CreateFMul(b_.CreateFMul(y, pow2(n1)), pow2(n2));
    out = b_.CreateSelect(b_.CreateFCmpOGT(x, c(hi)), c(INFINITY), out);
    return b_.CreateSelect(b_.CreateFCmpUNO(x, x), x, out);
  }

  // tanh for f32 without libm: the odd/even rational approximation of Eigen's
  // generic_fast_tanh_float on [-7.9053, 7.9053] (tanh rounds to +-1 beyond), and x itself
  // for |x| < 4e-4. NaN passes through.
  llvm::Value* emit_tanh_f32(llvm::Value* x) {
    llvm::IRBuilderBase::FastMathFlagGuard guard(b_);
    llvm::FastMathFlags contract_only;
    contract_only.setAllowContract(true);
    b_.setFastMathFlags(contract_only);
    llvm::Type* ft = x->getType();
    auto c = [&](double v) { return llvm::ConstantFP::get(ft, v); };
    const double clamp = 7.90531110763549805;
    llvm::Value* xc = b_.CreateSelect(b_.CreateFCmpOGT(x, c(clamp)), c(clamp), x);
    xc = b_.CreateSelect(b_.CreateFCmpOLT(xc, c(-clamp)), c(-clamp), xc);
    llvm::Value* x2 = b_.CreateFMul(xc, xc);
    llvm::Value* p = c(-2.76076847742355e-16);
    for (double k : {2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                     1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03}) {
      p = b_.CreateFAdd(b_.CreateFMul(p, x2), c(k));
    }
    p = b_.CreateFMul(p, xc);
    llvm::Value* q = c(1.19825839466702e-06);
    for (double k : {1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03}) {
      q = b_.CreateFAdd(b_.CreateFMul(q, x2), c(k));
    }
    llvm::Value* tiny =
        b_.CreateFCmpOLT(b_.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x), c(4e-4));
    return b_.CreateSelect(tiny, x, b_.CreateFDiv(p, q));
  }

  // A call to a scalar libm function, once per lane for vectors.
  llvm::Value* emit_libm_call(const char* name, llvm::Value* x) {
    llvm::Type* st = x->getType()->getScalarType();
    llvm::FunctionCallee fn =
        mod_.getOrInsertFunction(name, llvm::FunctionType::get(st, {st}, false));
    if (auto* f = llvm::dyn_cast<llvm::Function>(fn.getCallee())) {
      f->setDoesNotThrow();
      f->setWillReturn();
      f->setMemoryEffects(llvm::MemoryEffects::none());
    }
    auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(x->getType());
    if (!vt) return b_.CreateCall(fn, {x});
    llvm::Value* out = llvm::PoisonValue::get(vt);
    for (unsigned i = 0; i < vt->getNumElements(); ++i) {
      llvm::Value* lane = b_.CreateCall(fn, {b_.CreateExtractElement(x, uint64_t(i))});
      out = b_.CreateInsertElement(out, lane, uint64_t(i));
    }
    return out;
  }

  llvm::Value* buffer_pointer(const ir::BufferNode* b) {
    auto it = buffers_.find(b);
    KT_CHECK(it != buffers_.end(), "buffer ", b->name, " is used outside its allocation");
    return it->second;
  }

  // How a (possibly vector) index addresses memory.
  struct Address {
    enum { Scalar, Contiguous, Uniform, Gather } kind;
    llvm::Value* ptr;  // scalar pointer (Scalar/Contiguous/Uniform) or vector of pointers
    int lanes;
  };

  Address address(const ir::BufferNode* buf, const Expr& index) {
    llvm::Value* base = buffer_pointer(buf);
    llvm::Type* st = storage_type(buf->dtype);
    int lanes = index.type().lanes;
    if (lanes == 1)
      return {Address::Scalar, b_.CreateInBoundsGEP(st, base, to_i64(emit(index))), 1};
    if (const auto* r = index.as<ir::Ramp>()) {
      if (ir::is_const_int(r->stride, 1)) {
        return {Address::Contiguous, b_.CreateInBoundsGEP(st, base, to_i64(emit(r->base))), lanes};
      }
    }
    if (const auto* bc = index.as<ir::Broadcast>()) {
      return {Address::Uniform, b_.CreateInBoundsGEP(st, base, to_i64(emit(bc->value))), lanes};
    }
    return {Address::Gather, b_.CreateInBoundsGEP(st, base, to_i64(emit(index))), lanes};
  }

  // Gathers and scatters are emitted in chunks of power-of-two lanes. LLVM 19's X86 backend
  // widens an odd lane count (a vectorized loop of extent 34, say) with gathers whose index
  // vector is entirely undefined padding, and the register allocator may give that index the
  // destination's register, which the CPU rejects (#UD, SIGILL: "vgatherqps (%rax,%zmm0,4),
  // %ymm0"). Power-of-two pieces are split by the backend without undefined index vectors.
  static std::vector<std::pair<int, int>> pow2_chunks(int lanes) {
    std::vector<std::pair<int, int>> out;  // (first lane, count)
    for (int at = 0; at < lanes;) {
      int c = 1;
      while (c * 2 <= lanes - at) c *= 2;
      out.push_back({at, c});
      at += c;
    }
    return out;
  }

  llvm::Value* lanes_of(llvm::Value* v, int first, int count) {
    if (!v) return nullptr;
    std::vector<int> idx;
    for (int i = 0; i < count; ++i) idx.push_back(first + i);
    return b_.CreateShuffleVector(v, idx);
  }

  llvm::Value* gather(llvm::FixedVectorType* vt, llvm::Value* ptrs, llvm::Align align, llvm::Value* mask,
                      llvm::Value* passthru) {
    const int lanes = int(vt->getNumElements());
    const auto chunks = pow2_chunks(lanes);
    if (chunks.size() == 1) return b_.CreateMaskedGather(vt, ptrs, align, mask, passthru);
    llvm::Value* out = llvm::PoisonValue::get(vt);
    for (auto [first, count] : chunks) {
      llvm::Value* part = b_.CreateMaskedGather(llvm::FixedVectorType::get(vt->getElementType(), unsigned(count)),
                                                lanes_of(ptrs, first, count), align, lanes_of(mask, first, count),
                                                lanes_of(passthru, first, count));
      // Widen the part to `lanes` and blend it into lanes [first, first + count).
      std::vector<int> widen, blend;
      for (int i = 0; i < lanes; ++i) widen.push_back(i < count ? i : -1);
      for (int i = 0; i < lanes; ++i) blend.push_back(i >= first && i < first + count ? lanes + i - first : i);
      out = b_.CreateShuffleVector(out, b_.CreateShuffleVector(part, widen), blend);
    }
    return out;
  }

  void scatter(llvm::Value* v, llvm::Value* ptrs, llvm::Align align) {
    const int lanes = int(llvm::cast<llvm::FixedVectorType>(v->getType())->getNumElements());
    const auto chunks = pow2_chunks(lanes);
    if (chunks.size() == 1) {
      b_.CreateMaskedScatter(v, ptrs, align);
      return;
    }
    for (auto [first, count] : chunks) b_.CreateMaskedScatter(lanes_of(v, first, count), lanes_of(ptrs, first, count), align);
  }

  static bool has_load(const Expr& e) {
    bool found = false;
    ir::post_order_visit(e, [&](const Expr& x) { found = found || x.as<ir::Load>() != nullptr; });
    return found;
  }

  // Whether an arm of a select may be evaluated where it is not chosen, once its loads are
  // kept in bounds: it calls nothing (cost) and divides integers only by positive constants
  // (a division by zero traps).
  static bool speculatable(const Expr& e) {
    bool ok = true;
    ir::post_order_visit(e, [&](const Expr& x) {
      if (x.as<ir::Call>()) ok = false;
      const Expr* divisor = nullptr;
      if (const auto* d = x.as<ir::Div>()) divisor = &d->b;
      if (const auto* m = x.as<ir::Mod>()) divisor = &m->b;
      int64_t c = 0;
      if (divisor && !x.type().is_float() && !(ir::is_const_int(*divisor, &c) && c > 0)) ok = false;
    });
    return ok;
  }

  // A select whose arms read memory evaluates each arm only where it is chosen, since the
  // other arm's index may be out of bounds (padding: select(h >= pad, I[h - pad], 0)).
  // Scalar condition: when both arms are speculatable, both are evaluated with their loads
  // redirected to the buffer's first element where their arm is not chosen (`safe_`), and
  // a select picks the result: no branch, so the consumer's loop body stays one block that
  // LLVM can schedule, and the condition can be hoisted out of inner loops. Otherwise
  // branches and a phi. Vector condition: the arms' loads are masked.
  llvm::Value* emit_guarded_select(const ir::Select* op) {
    llvm::Value* c = emit(op->cond);
    if (!c->getType()->isVectorTy() && !mask_) {
      // select(c, load, constant), the padding pattern: one load from an address chosen
      // between the element and a constant in memory, no select of values.
      const auto* tl = op->true_value.as<ir::Load>();
      const auto* fl = op->false_value.as<ir::Load>();
      if (tl && is_constant(op->false_value)) return emit_load_or_constant(tl, c, op->false_value);
      if (fl && is_constant(op->true_value)) return emit_load_or_constant(fl, b_.CreateNot(c), op->true_value);
    }
    if (!c->getType()->isVectorTy() && !mask_ && speculatable(op->true_value) && speculatable(op->false_value)) {
      // A condition computed inside a speculated arm may be poison where that arm is not
      // chosen: combine conditions with a logical and, which then yields false.
      llvm::Value* saved = safe_;
      safe_ = saved ? b_.CreateLogicalAnd(saved, c) : c;
      llvm::Value* t = emit(op->true_value);
      llvm::Value* not_c = b_.CreateNot(c);
      safe_ = saved ? b_.CreateLogicalAnd(saved, not_c) : not_c;
      llvm::Value* f = emit(op->false_value);
      safe_ = saved;
      match_lanes(t, f);
      return b_.CreateSelect(c, t, f);
    }
    if (!c->getType()->isVectorTy()) {
      auto* then_bb = llvm::BasicBlock::Create(ctx_, "sel.true", fn_);
      auto* else_bb = llvm::BasicBlock::Create(ctx_, "sel.false", fn_);
      auto* done = llvm::BasicBlock::Create(ctx_, "sel.end", fn_);
      b_.CreateCondBr(c, then_bb, else_bb);
      b_.SetInsertPoint(then_bb);
      llvm::Value* t = emit(op->true_value);
      llvm::BasicBlock* t_end = b_.GetInsertBlock();
      b_.SetInsertPoint(else_bb);
      llvm::Value* f = emit(op->false_value);
      llvm::BasicBlock* f_end = b_.GetInsertBlock();
      // Bring both arms to one type in their own blocks.
      if (t->getType() != f->getType()) {
        auto* tv = llvm::dyn_cast<llvm::FixedVectorType>(t->getType());
        auto* fv = llvm::dyn_cast<llvm::FixedVectorType>(f->getType());
        if (tv && !fv) {
          f = splat(f, int(tv->getNumElements()));
          f_end = b_.GetInsertBlock();
        } else if (fv && !tv) {
          b_.SetInsertPoint(t_end);
          t = splat(t, int(fv->getNumElements()));
          t_end = b_.GetInsertBlock();
        }
      }
      b_.SetInsertPoint(t_end);
      b_.CreateBr(done);
      b_.SetInsertPoint(f_end);
      b_.CreateBr(done);
      b_.SetInsertPoint(done);
      llvm::PHINode* phi = b_.CreatePHI(t->getType(), 2);
      phi->addIncoming(t, t_end);
      phi->addIncoming(f, f_end);
      return phi;
    }
    const int lanes = int(llvm::cast<llvm::FixedVectorType>(c->getType())->getNumElements());
    llvm::Value* saved = mask_;
    llvm::Value* outer = saved ? saved : safe_ ? splat(safe_, lanes) : nullptr;
    mask_ = outer ? b_.CreateLogicalAnd(outer, c) : c;
    llvm::Value* t = emit(op->true_value);
    llvm::Value* not_c = b_.CreateNot(c);
    mask_ = outer ? b_.CreateLogicalAnd(outer, not_c) : not_c;
    llvm::Value* f = emit(op->false_value);
    mask_ = saved;
    match_lanes(t, f);
    return b_.CreateSelect(c, splat(t, lanes), splat(f, lanes));
  }

  static bool is_constant(const Expr& e) {
    const Expr& x = e.as<ir::Broadcast>() ? e.as<ir::Broadcast>()->value : e;
    return x.as<ir::IntImm>() || x.as<ir::FloatImm>();
  }

  // A read-only array of `lanes` copies of the constant `e` (scalar or broadcast) of element
  // type `et`, one per constant and width in the module.
  llvm::Constant* constant_storage(const Expr& e, ir::Type et, int lanes) {
    const Expr& x = e.as<ir::Broadcast>() ? e.as<ir::Broadcast>()->value : e;
    llvm::Type* st = storage_type(et);
    llvm::Constant* k = nullptr;
    if (const auto* f = x.as<ir::FloatImm>()) k = et.is_float() ? llvm::ConstantFP::get(st, f->value) : nullptr;
    if (const auto* i = x.as<ir::IntImm>())
      k = et.is_float() ? llvm::ConstantFP::get(st, double(i->value)) : llvm::ConstantInt::get(st, uint64_t(i->value), true);
    KT_CHECK(k, "a select between a load and a constant of another kind");
    auto* at = llvm::ArrayType::get(st, uint64_t(lanes));
    llvm::Constant* init = llvm::ConstantArray::get(at, std::vector<llvm::Constant*>(size_t(lanes), k));
    llvm::Constant*& g = constants_[init];
    if (!g) {
      auto* gv = new llvm::GlobalVariable(mod_, at, /*isConstant=*/true, llvm::GlobalValue::PrivateLinkage, init,
                                          "ktune.constant");
      gv->setUnnamedAddr(llvm::GlobalValue::UnnamedAddr::Global);
      gv->setAlignment(llvm::Align(64));
      g = gv;
    }
    return g;
  }

  // `c ? load : k` for a scalar condition c and a constant k: the load reads the constant's
  // storage where c (or an enclosing speculated arm's condition) fails.
  llvm::Value* emit_load_or_constant(const ir::Load* load, llvm::Value* c, const Expr& k) {
    llvm::Value* saved = safe_;
    safe_ = saved ? b_.CreateLogicalAnd(saved, c) : c;
    const int lanes = load->index.type().lanes;
    llvm::Value* v = emit_load(load, constant_storage(k, load->buffer->dtype.element_of(), lanes));
    safe_ = saved;
    return v;
  }

  // `otherwise`: where a speculated arm (safe_) is not chosen, the load reads this constant's
  // storage instead of the buffer's first element.
  llvm::Value* emit_load(const ir::Load* op, llvm::Constant* otherwise = nullptr) {
    ir::Type et = op->buffer->dtype.element_of();
    llvm::Type* st = storage_type(et);
    llvm::Align align(uint64_t(et.bytes()));
    Address a = address(op->buffer.get(), op->index);
    llvm::Value* v = nullptr;
    if (mask_) {
      // Inside a select arm with a vector condition: read only the lanes that are chosen.
      auto* mv = llvm::cast<llvm::FixedVectorType>(mask_->getType());
      const int mlanes = int(mv->getNumElements());
      if ((a.kind == Address::Contiguous || a.kind == Address::Gather) && a.lanes == mlanes) {
        auto* vt = llvm::FixedVectorType::get(st, a.lanes);
        llvm::Value* zero = llvm::Constant::getNullValue(vt);
        v = a.kind == Address::Contiguous ? b_.CreateMaskedLoad(vt, a.ptr, align, mask_, zero)
                                          : gather(vt, a.ptr, align, mask_, zero);
      } else {
        // The lanes do not line up with the mask (or one address serves all lanes): read
        // only if some lane is chosen, else read element 0, which always exists.
        llvm::Value* any = b_.CreateOrReduce(mask_);
        llvm::Value* base = buffer_pointer(op->buffer.get());
        if (a.kind == Address::Gather || a.kind == Address::Contiguous) {
          llvm::Value* out = llvm::PoisonValue::get(llvm::FixedVectorType::get(st, a.lanes));
          for (int i = 0; i < a.lanes; ++i) {
            llvm::Value* lp = a.kind == Address::Gather ? b_.CreateExtractElement(a.ptr, uint64_t(i))
                                                        : b_.CreateConstInBoundsGEP1_64(st, a.ptr, uint64_t(i));
            llvm::Value* li = b_.CreateSelect(any, lp, base);
            out = b_.CreateInsertElement(out, b_.CreateAlignedLoad(st, li, align), uint64_t(i));
          }
          v = out;
        } else {
          llvm::Value* x = b_.CreateAlignedLoad(st, b_.CreateSelect(any, a.ptr, base), align);
          v = a.lanes == 1 ? x : b_.CreateVectorSplat(unsigned(a.lanes), x);
        }
      }
      if (et.is_bool()) v = b_.CreateICmpNE(v, llvm::Constant::getNullValue(v->getType()));
      return v;
    }
    if (safe_) {
      // Inside a speculated select arm: where the arm is not chosen, read the first element
      // (a contiguous read too long for the buffer is masked instead).
      llvm::Value* base = otherwise ? otherwise : buffer_pointer(op->buffer.get());
      if (!otherwise && a.kind == Address::Contiguous && op->buffer->num_elements() < a.lanes) {
        auto* vt = llvm::FixedVectorType::get(st, a.lanes);
        v = b_.CreateMaskedLoad(vt, a.ptr, align, splat(safe_, a.lanes), llvm::Constant::getNullValue(vt));
        if (et.is_bool()) v = b_.CreateICmpNE(v, llvm::Constant::getNullValue(v->getType()));
        return v;
      }
      a.ptr = b_.CreateSelect(safe_, a.ptr, a.kind == Address::Gather ? splat(base, a.lanes) : base);
    }
    switch (a.kind) {
      case Address::Scalar:
        v = b_.CreateAlignedLoad(st, a.ptr, align);
        break;
      case Address::Contiguous:
        v = b_.CreateAlignedLoad(llvm::FixedVectorType::get(st, a.lanes), a.ptr, align);
        break;
      case Address::Uniform:
        v = b_.CreateVectorSplat(unsigned(a.lanes), b_.CreateAlignedLoad(st, a.ptr, align));
        break;
      case Address::Gather:
        v = gather(llvm::FixedVectorType::get(st, a.lanes), a.ptr, align, nullptr, nullptr);
        break;
    }
    if (et.is_bool()) v = b_.CreateICmpNE(v, llvm::Constant::getNullValue(v->getType()));
    return v;
  }

  // ---- statements --------------------------------------------------------------------

  void emit(const Stmt& s) {
    switch (s.kind()) {
      case ir::StmtKind::For:
        emit_for(s.as<ir::For>());
        return;
      case ir::StmtKind::Store:
        emit_store(s.as<ir::Store>());
        return;
      case ir::StmtKind::Allocate:
        emit_allocate(s.as<ir::Allocate>());
        return;
      case ir::StmtKind::IfThenElse:
        emit_if(s.as<ir::IfThenElse>());
        return;
      case ir::StmtKind::Block:
        for (const auto& c : s.as<ir::Block>()->stmts) emit(c);
        return;
      case ir::StmtKind::Barrier:
        return;  // CPU threads of one loop iteration do not share a block
      case ir::StmtKind::Evaluate:
        emit(s.as<ir::Evaluate>()->value);
        return;
      case ir::StmtKind::LetStmt: {
        const auto* op = s.as<ir::LetStmt>();
        llvm::Value* v = emit(op->value);
        const auto* var = op->var.as<ir::Var>();
        v->setName(var->name);
        Scoped scope(*this, var, v);
        if (auto bnd = op->value.type().is_scalar() && op->value.type().is_int()
                           ? ir::const_bounds(op->value, bounds_)
                           : std::nullopt) {
          scope.set_bounds(*bnd);
        }
        emit(op->body);
        return;
      }
    }
    KT_CHECK(false, "unhandled statement kind");
  }

  // Binds a variable (and optionally its bounds) for the extent of a C++ scope.
  class Scoped {
   public:
    Scoped(CodeGenLLVM& cg, const ir::Var* v, llvm::Value* value) : cg_(cg), v_(v) {
      auto it = cg.vars_.find(v);
      if (it != cg.vars_.end()) old_ = it->second;
      cg.vars_[v] = value;
      auto bt = cg.bounds_.find(v);
      if (bt != cg.bounds_.end()) old_bounds_ = bt->second;
      cg.bounds_.erase(v);
    }
    void set_bounds(ir::IntBounds b) { cg_.bounds_[v_] = b; }
    ~Scoped() {
      if (old_)
        cg_.vars_[v_] = old_;
      else
        cg_.vars_.erase(v_);
      if (old_bounds_)
        cg_.bounds_[v_] = *old_bounds_;
      else
        cg_.bounds_.erase(v_);
    }

   private:
    CodeGenLLVM& cg_;
    const ir::Var* v_;
    llvm::Value* old_ = nullptr;
    std::optional<ir::IntBounds> old_bounds_;
  };

  void emit_store(const ir::Store* op) {
    ir::Type et = op->buffer->dtype.element_of();
    llvm::Type* st = storage_type(et);
    llvm::Align align(uint64_t(et.bytes()));
    llvm::Value* v = emit(op->value);
    if (et.is_bool()) {
      auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(v->getType());
      v = b_.CreateZExt(v, vt ? llvm::FixedVectorType::get(st, vt->getNumElements()) : st);
    }
    Address a = address(op->buffer.get(), op->index);
    if (a.lanes > 1) v = splat(v, a.lanes);
    switch (a.kind) {
      case Address::Scalar:
      case Address::Contiguous:
        b_.CreateAlignedStore(v, a.ptr, align);
        return;
      case Address::Uniform:
        // Every lane writes the same element: the last lane's value is what remains.
        b_.CreateAlignedStore(b_.CreateExtractElement(v, uint64_t(a.lanes - 1)), a.ptr, align);
        return;
      case Address::Gather:
        scatter(v, a.ptr, align);
        return;
    }
  }

  llvm::Value* as_type(llvm::Value* v, llvm::Type* t) { return b_.CreateSExtOrTrunc(v, t); }

  // for (var = begin; var < end; ++var) body(var)
  template <typename F>
  void emit_loop(const std::string& name, llvm::Value* begin, llvm::Value* end, F&& body) {
    llvm::BasicBlock* pre = b_.GetInsertBlock();
    auto* header = llvm::BasicBlock::Create(ctx_, name + ".header", fn_);
    auto* loop = llvm::BasicBlock::Create(ctx_, name + ".body", fn_);
    auto* exit = llvm::BasicBlock::Create(ctx_, name + ".exit", fn_);
    b_.CreateBr(header);
    b_.SetInsertPoint(header);
    llvm::PHINode* i = b_.CreatePHI(begin->getType(), 2, name);
    i->addIncoming(begin, pre);
    b_.CreateCondBr(b_.CreateICmpSLT(i, end), loop, exit);
    b_.SetInsertPoint(loop);
    body(i);
    llvm::Value* next = b_.CreateAdd(i, llvm::ConstantInt::get(i->getType(), 1), name + ".next",
                                     /*HasNUW=*/false, /*HasNSW=*/true);
    i->addIncoming(next, b_.GetInsertBlock());
    b_.CreateBr(header);
    b_.SetInsertPoint(exit);
  }

  void emit_for(const ir::For* op) {
    const auto* var = op->var.as<ir::Var>();
    KT_CHECK(var, "loop variable is not a Var");
    if (ir::is_gpu_binding(op->for_kind)) {
      throw InvalidCandidate(detail::concat("GPU loop kind on a CPU target (loop over ", var->name,
                                            " is ", ir::for_kind_name(op->for_kind), ")"));
    }
    llvm::Type* vt = llvm_type(var->type);
    llvm::Value* min = as_type(emit(op->min), vt);
    llvm::Value* extent = as_type(emit(op->extent), vt);
    std::optional<ir::IntBounds> bnd;
    int64_t cmin = 0, cext = 0;
    if (ir::is_const_int(op->min, &cmin) && ir::is_const_int(op->extent, &cext) && cext > 0) {
      bnd = ir::IntBounds{cmin, cmin + cext - 1};
    }
    if (op->for_kind == ir::ForKind::Parallel && !in_parallel_) {
      emit_parallel_for(op, var, min, extent, bnd);
      return;
    }
    llvm::Value* end = b_.CreateAdd(min, extent, var->name + ".end", false, true);
    emit_loop(var->name, min, end, [&](llvm::Value* i) {
      Scoped scope(*this, var, i);
      if (bnd) scope.set_bounds(*bnd);
      emit(op->body);
    });
  }

  void emit_parallel_for(const ir::For* op, const ir::Var* var, llvm::Value* min,
                         llvm::Value* extent, std::optional<ir::IntBounds> bnd) {
    FreeVars fv;
    fv.visit(op->body);
    std::vector<const ir::Var*> cap_vars;
    for (const auto* v : fv.vars) {
      if (v != var) cap_vars.push_back(v);
    }
    llvm::Type* ptr = llvm::PointerType::get(ctx_, 0);
    llvm::Type* i64 = llvm::Type::getInt64Ty(ctx_);
    llvm::Type* void_ty = llvm::Type::getVoidTy(ctx_);

    // Closure layout: buffer pointers, captured variables, loop min.
    std::vector<llvm::Type*> fields;
    std::vector<llvm::Value*> values;
    for (const auto* b : fv.buffers) {
      fields.push_back(ptr);
      values.push_back(buffer_pointer(b));
    }
    for (const auto* v : cap_vars) {
      auto it = vars_.find(v);
      KT_CHECK(it != vars_.end(), "variable ", v->name, " is used outside its scope");
      llvm::Value* val = it->second;
      fields.push_back(val->getType());
      values.push_back(val);
    }
    fields.push_back(min->getType());
    values.push_back(min);
    auto* closure_ty = llvm::StructType::get(ctx_, fields);

    std::string name = f_.name + "_par_" + std::to_string(num_parallel_++);
    std::vector<llvm::Type*> impl_params = fields;
    impl_params.push_back(min->getType());  // begin
    impl_params.push_back(min->getType());  // end
    auto* impl = llvm::Function::Create(llvm::FunctionType::get(void_ty, impl_params, false),
                                        llvm::Function::InternalLinkage, name + "_impl", mod_);
    impl->addFnAttr(llvm::Attribute::NoUnwind);
    for (size_t i = 0; i < fv.buffers.size(); ++i) {
      impl->addParamAttr(unsigned(i), llvm::Attribute::NoAlias);
    }
    auto* wrapper = llvm::Function::Create(llvm::FunctionType::get(void_ty, {ptr, i64, i64}, false),
                                           llvm::Function::InternalLinkage, name, mod_);
    wrapper->addFnAttr(llvm::Attribute::NoUnwind);

    // Caller side: fill the closure and hand it to the thread pool.
    llvm::Value* closure = entry_alloca(closure_ty, 8, "closure");
    for (size_t i = 0; i < values.size(); ++i) {
      b_.CreateStore(values[i], b_.CreateStructGEP(closure_ty, closure, unsigned(i)));
    }
    llvm::FunctionCallee pfor = mod_.getOrInsertFunction(
        "ktune_parallel_for", llvm::FunctionType::get(void_ty, {ptr, ptr, i64}, false));
    b_.CreateCall(pfor, {wrapper, closure, b_.CreateSExtOrTrunc(extent, i64)});
    auto saved_ip = b_.saveIP();

    // Wrapper: unpack the closure.
    b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", wrapper));
    std::vector<llvm::Value*> args;
    for (size_t i = 0; i < fields.size(); ++i) {
      args.push_back(b_.CreateLoad(
          fields[i], b_.CreateStructGEP(closure_ty, wrapper->getArg(0), unsigned(i))));
    }
    args.push_back(as_type(wrapper->getArg(1), min->getType()));
    args.push_back(as_type(wrapper->getArg(2), min->getType()));
    b_.CreateCall(impl, args);
    b_.CreateRetVoid();

    // Outlined body: iterations [min + begin, min + end).
    auto saved_vars = vars_;
    auto saved_buffers = buffers_;
    llvm::Function* saved_fn = fn_;
    fn_ = impl;
    in_parallel_ = true;
    b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", impl));
    buffers_.clear();
    vars_.clear();
    unsigned arg = 0;
    for (const auto* b : fv.buffers) {
      impl->getArg(arg)->setName(b->name);
      buffers_[b] = impl->getArg(arg++);
    }
    for (const auto* v : cap_vars) {
      impl->getArg(arg)->setName(v->name);
      vars_[v] = impl->getArg(arg++);
    }
    llvm::Value* pmin = impl->getArg(arg++);
    llvm::Value* begin = b_.CreateAdd(pmin, impl->getArg(arg++), "begin", false, true);
    llvm::Value* end = b_.CreateAdd(pmin, impl->getArg(arg++), "end", false, true);
    emit_loop(var->name, begin, end, [&](llvm::Value* i) {
      Scoped scope(*this, var, i);
      if (bnd) scope.set_bounds(*bnd);
      emit(op->body);
    });
    b_.CreateRetVoid();

    in_parallel_ = false;
    fn_ = saved_fn;
    vars_ = std::move(saved_vars);
    buffers_ = std::move(saved_buffers);
    b_.restoreIP(saved_ip);
  }

  llvm::AllocaInst* entry_alloca(llvm::Type* t, uint64_t align, const std::string& name) {
    llvm::BasicBlock& entry = fn_->getEntryBlock();
    llvm::IRBuilder<> eb(&entry, entry.begin());
    llvm::AllocaInst* a = eb.CreateAlloca(t, nullptr, name);
    a->setAlignment(llvm::Align(align));
    return a;
  }

  void emit_allocate(const ir::Allocate* op) {
    const ir::BufferNode* buf = op->buffer.get();
    ir::Type et = buf->dtype.element_of();
    llvm::Type* st = storage_type(et);
    int64_t n = buf->num_elements();
    int64_t bytes = n * et.bytes();
    KT_CANDIDATE_CHECK(n >= 0, "allocation of ", buf->name, " with ", n, " elements");
    auto old = buffers_.find(buf);
    llvm::Value* saved = old == buffers_.end() ? nullptr : old->second;
    if (buf->scope != ir::MemoryScope::Global && bytes <= kMaxStackAllocBytes) {
      // One stack slot per (function, buffer): unrolled copies of an Allocate reuse it.
      auto key = std::make_pair(fn_, buf);
      auto it = stack_slots_.find(key);
      if (it == stack_slots_.end()) {
        it = stack_slots_
                 .emplace(key, entry_alloca(llvm::ArrayType::get(st, uint64_t(n)), 64, buf->name))
                 .first;
      }
      buffers_[buf] = it->second;
      emit(op->body);
    } else {
      llvm::Type* ptr = llvm::PointerType::get(ctx_, 0);
      llvm::Type* i64 = llvm::Type::getInt64Ty(ctx_);
      // The runtime's workspace (runtime/workspace.h): blocks released by one call are
      // handed to the next, so a kernel in a loop does not fault its temporaries in afresh.
      llvm::FunctionCallee alloc = mod_.getOrInsertFunction(
          "ktune_workspace_alloc", llvm::FunctionType::get(ptr, {i64}, false));
      llvm::FunctionCallee release = mod_.getOrInsertFunction(
          "ktune_workspace_free", llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {ptr, i64}, false));
      const int64_t rounded = std::max<int64_t>(64, (bytes + 63) / 64 * 64);
      llvm::Value* p = b_.CreateCall(alloc, {b_.getInt64(uint64_t(rounded))}, buf->name);
      if (auto* call = llvm::dyn_cast<llvm::CallInst>(p)) {
        call->addRetAttr(llvm::Attribute::NoAlias);
        call->addRetAttr(llvm::Attribute::getWithAlignment(ctx_, llvm::Align(64)));
      }
      buffers_[buf] = p;
      emit(op->body);
      b_.CreateCall(release, {p, b_.getInt64(uint64_t(rounded))});
    }
    if (saved)
      buffers_[buf] = saved;
    else
      buffers_.erase(buf);
  }

  void emit_if(const ir::IfThenElse* op) {
    llvm::Value* c = emit(op->cond);
    KT_CHECK(!c->getType()->isVectorTy(), "vector condition in IfThenElse");
    auto* then_bb = llvm::BasicBlock::Create(ctx_, "then", fn_);
    auto* else_bb = op->else_case.defined() ? llvm::BasicBlock::Create(ctx_, "else", fn_) : nullptr;
    auto* done = llvm::BasicBlock::Create(ctx_, "endif", fn_);
    b_.CreateCondBr(c, then_bb, else_bb ? else_bb : done);
    b_.SetInsertPoint(then_bb);
    emit(op->then_case);
    b_.CreateBr(done);
    if (else_bb) {
      b_.SetInsertPoint(else_bb);
      emit(op->else_case);
      b_.CreateBr(done);
    }
    b_.SetInsertPoint(done);
  }

  llvm::LLVMContext& ctx_;
  llvm::Module& mod_;
  llvm::IRBuilder<> b_;
  const ir::LoweredFunc& f_;
  llvm::Function* fn_ = nullptr;
  std::unordered_map<const ir::ExprNode*, llvm::Value*> vars_;
  std::unordered_map<const ir::BufferNode*, llvm::Value*> buffers_;
  std::map<std::pair<llvm::Function*, const ir::BufferNode*>, llvm::AllocaInst*> stack_slots_;
  ir::BoundsMap bounds_;
  bool in_parallel_ = false;
  int num_parallel_ = 0;
  llvm::Value* mask_ = nullptr;  // lanes whose loads may run (inside a vector select arm)
  llvm::Value* safe_ = nullptr;  // whether loads may run (inside a speculated scalar select arm)
  std::map<llvm::Constant*, llvm::Constant*> constants_;  // constant_storage: initializer -> global
};

// Whether LLVM's loop vectorizer may run on `f`: no basic block with more than 512 loads and
// stores, and at most 2,048 in all. Its loop access analysis is quadratic in a loop's memory
// accesses, and it analyses every loop: a conv2d_nchwc candidate whose auto-unroll (512 steps)
// left 1,818 blocks with 14,624 loads and stores (at most 224 in a block) spent 44 s there,
// and its compile ran into --compile-timeout. The examples in docs/examples have at most 427.
bool loop_vectorizer_affordable(const llvm::Function& f) {
  int most = 0, total = 0;
  for (const llvm::BasicBlock& bb : f) {
    int n = 0;
    for (const llvm::Instruction& i : bb) n += llvm::isa<llvm::LoadInst>(i) || llvm::isa<llvm::StoreInst>(i);
    most = std::max(most, n);
    total += n;
  }
  return most <= 512 && total <= 2048;
}

// Jump threading is skipped on functions larger than this. A conv2d_nchwc candidate whose
// unrolled tile reached 87,598 instructions spent 13 of its 28 s of optimization in it; the
// best kernels of the CPU benchmark's 17 tunes have at most 1,119 instructions when it runs,
// and ktune's loop nests have few branches for it to thread (padding is selects).
constexpr unsigned kMaxJumpThreadingInstructions = 10000;

// A module larger than this before optimization is refused (InvalidCandidate) rather than
// compiled: LLVM's time grows faster than its size (a conv2d_nchwc tune's candidates: ~2,000
// instructions, under 0.1 s; 12,000-25,000, 0.2-1.4 s; 62,000, 3.3 s; 123,000, 9.5 s), and
// such code is slow anyway (all of those ran 1.6-27x slower than the tune's best). The best
// kernels of the CPU benchmark's 17 tunes have at most 2,257. Such candidates come from an
// unrolled tile whose vectorized loop could not be widened (its lanes become scalar copies).
constexpr unsigned kMaxModuleInstructions = 50000;

void optimize_module(llvm::Module& m, llvm::TargetMachine& tm) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PipelineTuningOptions pto;
  pto.LoopVectorization = true;
  pto.SLPVectorization = true;
  pto.LoopUnrolling = true;
  // LLVM's loop access analysis is quadratic in the memory accesses of a loop body: on a loop
  // whose body is a large unrolled tile, loop-load elimination and the loop vectorizer took up
  // to a minute per kernel. Loop-load elimination (forwarding stores across iterations) gains
  // ktune's loops nothing and never runs; the loop vectorizer is skipped for functions with
  // such a block or too many accesses in all (ktune vectorizes what the schedule says itself).
  // Jump threading is skipped on very large functions (kMaxJumpThreadingInstructions).
  llvm::PassInstrumentationCallbacks pic;
  pic.registerShouldRunOptionalPassCallback([](llvm::StringRef pass, llvm::Any ir) {
    if (pass == "LoopLoadEliminationPass") return false;
    if (pass == "LoopVectorizePass")
      if (const auto* f = llvm::any_cast<const llvm::Function*>(&ir)) return loop_vectorizer_affordable(**f);
    if (pass == "JumpThreadingPass")
      if (const auto* f = llvm::any_cast<const llvm::Function*>(&ir))
        return (*f)->getInstructionCount() <= kMaxJumpThreadingInstructions;
    return true;
  });
  // --debug 2: the optimization passes that took over 100 ms on this module (a slow compile's
  // culprit; the backend's time is the rest of the candidate's compile_ms).
  using PassClock = std::chrono::steady_clock;
  std::vector<PassClock::time_point> pass_starts;
  if (debug_level() >= 2) {
    pic.registerBeforeNonSkippedPassCallback(
        [&pass_starts](llvm::StringRef, llvm::Any) { pass_starts.push_back(PassClock::now()); });
    auto after = [&pass_starts, &m](llvm::StringRef pass) {
      if (pass_starts.empty()) return;
      const double ms = std::chrono::duration<double, std::milli>(PassClock::now() - pass_starts.back()).count();
      pass_starts.pop_back();
      if (ms > 100) debug(2) << "LLVM pass " << pass.str() << " on " << m.getName().str() << ": " << ms << " ms\n";
    };
    pic.registerAfterPassCallback([after](llvm::StringRef pass, llvm::Any, const llvm::PreservedAnalyses&) { after(pass); });
    pic.registerAfterPassInvalidatedCallback([after](llvm::StringRef pass, const llvm::PreservedAnalyses&) { after(pass); });
  }
  llvm::PassBuilder pb(&tm, pto, std::nullopt, &pic);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(m, mam);
}

std::string cpu_name_for(const llvm::Triple& triple) {
  // Code is chosen by the feature list, never by the CPU name (DESIGN §10).
  return triple.isX86() && triple.isArch64Bit() ? "x86-64" : "generic";
}

// The machine scheduler's dependence graph of a block is built with at most this many loads and
// stores tracked at a time (LLVM's -dag-maps-huge-region; its default 1,000). Building it is
// quadratic in a block's memory operations: a conv2d_nchwc candidate whose unrolled tile left
// blocks of several hundred spent 58% of its 1.1-s compile there (0.38 s with this limit; llc
// on its optimized IR: 0.64 s, 0.20 s at 200, 0.09 s without the scheduler), and candidates
// like it made up most of a tune's compile time. The best kernels of the CPU benchmark's 17
// tunes compile to the same object code at 100 as at 1,000.
constexpr const char* kSchedulerRegionLimit = "100";
constexpr const char* kSchedulerRegionOption = "dag-maps-huge-region";

// LLVM's registered command-line option `name`, or nullptr.
llvm::cl::Option* find_llvm_option(const char* name) {
  llvm::StringMap<llvm::cl::Option*>& opts = llvm::cl::getRegisteredOptions();
  auto it = opts.find(name);
  return it == opts.end() ? nullptr : it->second;
}

void set_llvm_option(const char* name, const char* value) {
  llvm::cl::Option* opt = find_llvm_option(name);
  if (!opt) {
    debug(1) << "LLVM has no option -" << name << "; left as is\n";
    return;
  }
  if (opt->addOccurrence(0, name, value))
    debug(1) << "LLVM refused -" << name << "=" << value << "\n";
}

}  // namespace

void initialize_llvm() {
  static std::once_flag once;
  std::call_once(once, [] {
    set_llvm_option(kSchedulerRegionOption, kSchedulerRegionLimit);
#ifdef KTUNE_STATIC_LLVM
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
#else
    llvm::InitializeAllTargetInfos();
    llvm::InitializeAllTargets();
    llvm::InitializeAllTargetMCs();
    llvm::InitializeAllAsmPrinters();
    llvm::InitializeAllAsmParsers();
#endif
  });
}

unsigned machine_scheduler_region_limit() {
  llvm::cl::Option* opt = find_llvm_option(kSchedulerRegionOption);
  return opt ? static_cast<llvm::cl::opt<unsigned>*>(opt)->getValue() : 0;
}

std::string cpu_name_for_codegen(const target::Target& t) {
  return cpu_name_for(llvm::Triple(t.triple));
}

std::unique_ptr<llvm::TargetMachine> make_target_machine(const target::Target& t) {
  KT_USER_CHECK(t.kind == target::TargetKind::CPU, "target ", t.name, " is a ",
                target::kind_name(t.kind), " target; the CPU code generator needs a CPU target");
  initialize_llvm();
  llvm::Triple triple(t.triple);
  std::string err;
  const llvm::Target* target = llvm::TargetRegistry::lookupTarget(t.triple, err);
  KT_USER_CHECK(target, "target ", t.name, ": LLVM has no backend for triple ", t.triple, ": ",
                err);
  llvm::TargetOptions opts;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      t.triple, cpu_name_for(triple), t.feature_string(), opts, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  KT_USER_CHECK(tm, "target ", t.name, ": LLVM could not create a target machine for ", t.triple);
  return tm;
}

namespace {

// `vscale` > 0 fixes the SVE vector length (vscale_range) of every function.
std::unique_ptr<llvm::Module> emit_module(const ir::LoweredFunc& f, llvm::LLVMContext& ctx,
                                          llvm::TargetMachine& tm, unsigned vscale) {
  auto m = std::make_unique<llvm::Module>(f.name, ctx);
  m->setTargetTriple(tm.getTargetTriple().str());
  m->setDataLayout(tm.createDataLayout());
  CodeGenLLVM(*m, f).run();

  std::string cpu = tm.getTargetCPU().str(), features = tm.getTargetFeatureString().str();
  for (llvm::Function& fn : *m) {
    if (fn.isDeclaration()) continue;
    fn.addFnAttr("target-cpu", cpu);
    if (!features.empty()) fn.addFnAttr("target-features", features);
    if (vscale) fn.addFnAttr(llvm::Attribute::getWithVScaleRangeArgs(ctx, vscale, vscale));
  }
  std::string msg;
  llvm::raw_string_ostream os(msg);
  if (llvm::verifyModule(*m, &os)) {
    os.flush();
    throw InvalidCandidate("LLVM module verification failed: " + msg);
  }
  const unsigned size = m->getInstructionCount();
  debug(2) << "LLVM module " << m->getName().str() << ": " << size << " instructions before optimization\n";
  if (size > kMaxModuleInstructions)
    throw InvalidCandidate("the kernel's code is too large to compile: " + std::to_string(size) +
                           " LLVM instructions before optimization (limit " +
                           std::to_string(kMaxModuleInstructions) + "); unroll less");
  optimize_module(*m, tm);
  return m;
}

}  // namespace

std::unique_ptr<llvm::Module> emit_llvm(const ir::LoweredFunc& f, llvm::LLVMContext& ctx,
                                        llvm::TargetMachine& tm) {
  return emit_module(f, ctx, tm, 0);
}

std::unique_ptr<llvm::Module> emit_llvm(const ir::LoweredFunc& f, llvm::LLVMContext& ctx,
                                        llvm::TargetMachine& tm, const target::Target& t) {
  // Fixed-length SVE: a known vector length lets LLVM use SVE registers for fixed vectors.
  bool sve = tm.getTargetTriple().isAArch64() && t.has_feature("sve") && t.vector_bits >= 128;
  return emit_module(f, ctx, tm, sve ? unsigned(t.vector_bits / 128) : 0);
}

}  // namespace ktune::codegen
