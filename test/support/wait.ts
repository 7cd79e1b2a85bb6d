import { inspect } from 'node:util'

export interface WaitForOptions {
  /** Give up after this many ms (default 10000). */
  timeout?: number
  /** Pause between attempts in ms (default 10). */
  interval?: number
  /** Prefix for the timeout error. */
  message?: string
}

const TIMED_OUT = Symbol('timed out')

/**
 * Poll `fn` until it returns a truthy value, treating a throw as "not yet"; use this instead of sleeps.
 * Assertion-style callbacks must end with `return true`. Rejects after `timeout` ms with the last
 * error (or last falsy value) in the message; a hanging attempt cannot outlive the deadline.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const { timeout = 10_000, interval = 10, message = 'waitFor: condition not met' } = opts
  const deadline = Date.now() + timeout
  let lastError: unknown
  let lastValue: unknown
  let attempts = 0
  let hung = false
  for (;;) {
    attempts++
    try {
      const value = await beforeDeadline(fn, deadline)
      if (value === TIMED_OUT) {
        hung = true
        break
      }
      if (value) return value as NonNullable<T>
      lastValue = value
      lastError = undefined
    }
    catch (err) {
      lastError = err
    }
    const remaining = deadline - Date.now()
    if (remaining <= 0) break
    await new Promise(resolve => setTimeout(resolve, Math.min(interval, remaining)))
  }
  const last = lastError !== undefined
    ? `last error: ${lastError instanceof Error ? lastError.message : inspect(lastError)}`
    : `last value: ${inspect(lastValue)}`
  const pending = hung ? '; the final attempt was still pending' : ''
  throw new Error(`${message} within ${timeout} ms (${attempts} attempts; ${last}${pending})`, { cause: lastError })
}

/** One attempt, raced against the deadline. */
async function beforeDeadline<T>(fn: () => T | Promise<T>, deadline: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, deadline - Date.now()))
  })
  try {
    return await Promise.race([Promise.resolve().then(fn), timedOut])
  }
  finally {
    clearTimeout(timer)
  }
}
