/**
 * A token bucket: `burst` tokens at most, refilled at `perSecond`. Refilled
 * lazily on `take`, so it costs one subtraction and a compare per frame and
 * no timer.
 */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst
    this.last = now
  }

  /** Takes one token; false when the bucket is empty. `now` in ms. */
  take(now: number): boolean {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000)
      this.last = now
    }
    if (this.tokens < 1) return false
    this.tokens--
    return true
  }
}
