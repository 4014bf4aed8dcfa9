// Run as `java Probe.java` under the layer: the JVM's own paths (sockets are AF_INET6 with
// v4-mapped peers, File.list uses readdir, ProcessBuilder uses posix_spawn).
import java.io.*;
import java.net.*;
import java.nio.file.*;
import java.util.*;

public class Probe {
    public static void main(String[] args) throws Exception {
        System.out.println("read: " + Files.readString(Path.of("/remote/hello.txt")).trim());
        System.out.println("length: " + new File("/remote/hello.txt").length());
        System.out.println("list: " + String.join(",", new TreeSet<>(Arrays.asList(new File("/remote/dir").list()))));
        System.out.println("kube: " + new File("/root/.kube/config").exists());
        InetAddress ia = InetAddress.getByName("pod-only.svc.cluster.local");
        System.out.println("ip: " + ia.getHostAddress());
        try (Socket s = new Socket(ia, 80)) {
            BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream()));
            System.out.println("banner: " + r.readLine());
        }
        Process p = new ProcessBuilder("cat", "/remote/hello.txt").start();
        System.out.println("child: " + new String(p.getInputStream().readAllBytes()).trim());
        p.waitFor();
    }
}
