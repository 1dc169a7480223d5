export function nodeBinary(major: number, arch?: 'x64' | 'arm64'): Promise<string>;
