// The `generate` source: records n = 0, 1, 2, … (`count` of them, or without end), as
// {n: n} or as the table a Lua function of `n` returns, optionally paced to `rate`
// events per second with a token bucket.
//
// Parallelism N: instance i produces the n ≡ i (mod N), and the rate is split evenly, so
// the node as a whole produces the same numbers at the same total rate.
// Position: offset = the next n this instance produces, count = records it produced.
//
// Threading: one instance per task thread.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/lua/lua_env.h"

namespace onceflow::ops {

namespace {

using Clock = std::chrono::steady_clock;

// The longest a rate-limited Read sleeps (Source contract: ~50 ms at most).
constexpr double kMaxSleepSeconds = 0.05;
// Burst allowance: a bucket holds at most this many seconds' worth of tokens (and at
// least one), so a slow consumer does not cause a burst later.
constexpr double kBurstSeconds = 0.1;

class GenerateSource : public Source {
 public:
  explicit GenerateSource(const NodeSpec& spec) : spec_(spec) {
    has_count_ = Given(spec.options, "count");
    count_ = has_count_ ? static_cast<uint64_t>(std::max<int64_t>(0, spec.options.GetInt("count"))) : 0;
    rate_ = Given(spec.options, "rate") ? spec.options.GetNumber("rate") : 0;
    has_lua_ = Given(spec.options, "lua");
  }

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    instance_ = static_cast<uint64_t>(ctx.instance);
    step_ = static_cast<uint64_t>(std::max(1, ctx.parallelism));
    next_ = instance_;
    produced_ = 0;
    if (rate_ > 0) {
      instance_rate_ = rate_ / static_cast<double>(step_);
      capacity_ = std::max(1.0, instance_rate_ * kBurstSeconds);
      tokens_ = 1.0;
      last_refill_ = Clock::now();
    }
    if (has_lua_) {
      code_ = spec_.options.Raw("lua");
      code_key_ = spec_.at != nullptr ? spec_.at->FindKey("lua") : nullptr;
      ONCEFLOW_RETURN_IF_ERROR(env_.Open(spec_.id));
      ONCEFLOW_RETURN_IF_ERROR(
          env_.Compile(spec_.options.GetString("lua"), LuaCode::kBody, "n", &fn_)
              .WithContext("node '" + spec_.id + "'"));
    }
    return Status::Ok();
  }

  Status Read(size_t max, Emitter& out, bool* end) override {
    *end = false;
    size_t budget = max;
    if (rate_ > 0) budget = std::min(budget, TakeTokens());
    std::string error;
    for (size_t k = 0; k < budget; ++k) {
      if (has_count_ && next_ >= count_) break;
      uint64_t n = next_;
      next_ += step_;
      ++produced_;
      if (rate_ > 0) tokens_ -= 1.0;
      Record& rec = out.batch()->emplace_back();
      rec.origin.source = ctx_->node_index;
      rec.origin.position = n + 1;  // 1-based like every origin: the record number
      if (!has_lua_) {
        rec.Append("n", Value::Int(static_cast<int64_t>(n)));
        continue;
      }
      env_.PushInteger(static_cast<int64_t>(n));
      bool ok = env_.Call(fn_, &error);
      if (ok) {
        ok = env_.ToRecord(-1, nullptr, &rec, &error);
        env_.Pop(1);
        if (!ok) error = "generate: the Lua code must return a table (a record): " + error;
      } else {
        error = DescribeLuaError(error, code_, code_key_);
      }
      if (!ok) {
        Record failed;
        failed.Append("n", Value::Int(static_cast<int64_t>(n)));
        failed.origin = rec.origin;
        out.batch()->pop_back();
        ONCEFLOW_RETURN_IF_ERROR(ctx_->errors->OnRecordError(failed, error));
      }
    }
    *end = has_count_ && next_ >= count_;
    return Status::Ok();
  }

  SourcePosition Position() const override {
    SourcePosition pos;
    pos.offset = next_;
    pos.count = produced_;
    return pos;
  }

  Status Seek(const SourcePosition& pos) override {
    // The next n of this instance at or after the checkpointed one (equal unless the
    // parallelism changed since).
    uint64_t n = pos.offset;
    uint64_t rem = n % step_;
    if (rem != instance_) n += (instance_ + step_ - rem) % step_;
    next_ = n;
    produced_ = pos.count;
    return Status::Ok();
  }

 private:
  // Refills the bucket; when it holds less than one token, sleeps (≤ 50 ms) for the next.
  // Returns how many whole tokens are available.
  size_t TakeTokens() {
    Refill();
    if (tokens_ < 1.0) {
      double wait = std::min(kMaxSleepSeconds, (1.0 - tokens_) / instance_rate_);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      Refill();
    }
    return tokens_ < 1.0 ? 0 : static_cast<size_t>(std::floor(tokens_));
  }

  void Refill() {
    auto now = Clock::now();
    double dt = std::chrono::duration<double>(now - last_refill_).count();
    last_refill_ = now;
    tokens_ = std::min(capacity_, tokens_ + dt * instance_rate_);
  }

  const NodeSpec& spec_;
  NodeContext* ctx_ = nullptr;
  bool has_count_ = false;
  uint64_t count_ = 0;
  double rate_ = 0;
  bool has_lua_ = false;

  uint64_t instance_ = 0, step_ = 1;
  uint64_t next_ = 0, produced_ = 0;

  double instance_rate_ = 0, capacity_ = 1, tokens_ = 0;
  Clock::time_point last_refill_;

  const YNode* code_ = nullptr;
  const YNode* code_key_ = nullptr;
  LuaEnv env_;
  int fn_ = 0;
};

}  // namespace

NodeTypeDef GenerateSourceDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSource;
  d.type = "generate";
  d.summary = "generate records n = 0, 1, 2, ... (for tests and benchmarks)";
  d.options = {
      WithRange(Option("count", OptionType::kInt, "",
                       "number of records to generate; omit for an endless stream"),
                0, 9.2e18),
      Option("rate", OptionType::kNumber, "",
             "events per second for the whole node (> 0); omit for as fast as possible"),
      Option("lua", OptionType::kLua, "",
             "Lua function body of `n` returning the record, e.g. \"return {n = n, key = n % "
             "10}\" (fields in alphabetical order); default {n = n}"),
  };
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    if (Given(spec.options, "rate") && spec.options.GetNumber("rate") <= 0) {
      diags.Error(*spec.options.Raw("rate"),
                  "node '" + spec.id + "': rate must be greater than 0",
                  "omit `rate` to generate as fast as possible");
    }
    CheckLuaOption(spec, "lua", LuaCode::kBody, "n", diags);
  };
  d.make_source = [](const NodeSpec& spec) { return std::make_unique<GenerateSource>(spec); };
  return d;
}

}  // namespace onceflow::ops
