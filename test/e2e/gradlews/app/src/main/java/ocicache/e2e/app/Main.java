package ocicache.e2e.app;

import ocicache.e2e.lib.Checksum;
import ocicache.e2e.lib.Greeter;

/** Prints a greeting and its checksum. */
public final class Main {
  private Main() {}

  static String line(String name) {
    String g = new Greeter().greet(name);
    return g + " " + Long.toHexString(Checksum.of(g));
  }

  public static void main(String[] args) {
    System.out.println(line(args.length > 0 ? args[0] : "world"));
  }
}
