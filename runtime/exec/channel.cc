// Bounded channel implementation; see channel.h for the contract.
#include "runtime/exec/channel.h"

#include <utility>

namespace onceflow {

Channel::Channel(size_t capacity, Notifier* consumer)
    : capacity_(capacity == 0 ? 1 : capacity), consumer_(consumer), ring_(capacity_) {}

bool Channel::Push(Envelope* env) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (count_ == capacity_ && !cancelled_.load(std::memory_order_relaxed)) {
      producer_waiting_ = true;
      not_full_.wait(
          lock, [&] { return count_ < capacity_ || cancelled_.load(std::memory_order_relaxed); });
      producer_waiting_ = false;
    }
    if (cancelled_.load(std::memory_order_relaxed)) return false;
    Envelope& slot = ring_[(head_ + count_) % capacity_];
    // Swap, not move: the slot holds the vector the consumer gave back (cleared), which
    // becomes the producer's next batch.
    std::swap(slot.batch, env->batch);
    slot.kind = env->kind;
    slot.id = env->id;
    slot.ts = env->ts;
    slot.exhausted = env->exhausted;
    slot.seq_start = env->seq_start;
    slot.seq_end = env->seq_end;
    slot.pos_offset = env->pos_offset;
    slot.src_base = env->src_base;
    std::swap(slot.pos_name, env->pos_name);
    ++count_;
    size_.store(count_, std::memory_order_relaxed);
  }
  // The consumer's queue slot already holds the envelope, so a consumer that polled
  // before this push will see the epoch move and not sleep (Notifier protocol).
  if (consumer_ != nullptr) consumer_->Signal();
  // Cheap insurance: the vector we got back should be empty already.
  env->batch.clear();
  return true;
}

bool Channel::PushEnd(bool exhausted) {
  Envelope env;
  env.kind = Envelope::Kind::kEnd;
  env.exhausted = exhausted;
  return Push(&env);
}

bool Channel::TryPop(Envelope* env) {
  // Destroy the previous batch's records outside the lock; only the (now empty) vector
  // with its capacity goes back into the ring.
  env->batch.clear();
  bool wake_producer = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (count_ == 0 || cancelled_.load(std::memory_order_relaxed)) return false;
    Envelope& slot = ring_[head_];
    std::swap(slot.batch, env->batch);
    env->kind = slot.kind;
    env->id = slot.id;
    env->ts = slot.ts;
    env->exhausted = slot.exhausted;
    env->seq_start = slot.seq_start;
    env->seq_end = slot.seq_end;
    env->pos_offset = slot.pos_offset;
    env->src_base = slot.src_base;
    std::swap(env->pos_name, slot.pos_name);
    head_ = (head_ + 1) % capacity_;
    --count_;
    size_.store(count_, std::memory_order_relaxed);
    wake_producer = producer_waiting_;
  }
  if (wake_producer) not_full_.notify_one();
  return true;
}

void Channel::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_.store(true, std::memory_order_release);
  }
  not_full_.notify_all();
  if (consumer_ != nullptr) consumer_->Cancel();
}

}  // namespace onceflow
