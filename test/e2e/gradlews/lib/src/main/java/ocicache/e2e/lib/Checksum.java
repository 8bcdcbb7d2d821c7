package ocicache.e2e.lib;

/** FNV-1a over a string's characters. */
public final class Checksum {
  private Checksum() {}

  public static long of(String s) {
    long h = 0xcbf29ce484222325L;
    for (int i = 0; i < s.length(); i++) {
      h ^= s.charAt(i);
      h *= 0x100000001b3L;
    }
    return h;
  }
}
