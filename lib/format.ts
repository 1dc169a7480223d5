// Sizes for people, as `docker info` printed them (go-units HumanSize):
// decimal units and four significant digits, e.g. "1.202 GB", "65.54 kB".
const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];

/** Bytes as people read them, in decimal units as docker info printed them ('10.74 GB'). */
export function humanSize(bytes: number): string {
  let size = bytes;
  let unit = 0;
  while (size >= 1000 && unit < UNITS.length - 1) {
    size /= 1000;
    unit++;
  }
  return `${Number(size.toPrecision(4))} ${UNITS[unit]}`;
}
