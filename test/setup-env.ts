// Tests log at warn and above unless a developer asks for more.
process.env.MESHFED_LOG_LEVEL ??= 'warn';
