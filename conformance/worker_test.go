package conformance

const workerEnv = "BREAKERBOX_CONFORMANCE_WORKER"

func workerMain(spec string) int { return 2 }
