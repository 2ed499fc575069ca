package listen

// SetClaimHook makes a's sessions call hook before each claim attempt,
// after reading the slot count: the test of a shrink racing a claim.
// Call it before Run.
func (a *Arms) SetClaimHook(hook func(attempt, slots int)) { a.claimHook = hook }
