"""The core: intake (the job envelope), placing, sweeps, follow-ups, notifications, operations, views."""
